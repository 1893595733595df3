"""No orphans: a child process that dies with the process that started it.

Used as ``preexec_fn`` (in the child, between fork and exec) or right after a bare
``fork()``: Linux delivers SIGKILL to the child when its parent ends, however the parent
ends — even by SIGKILL, when no cleanup of ours can run. Elsewhere it does nothing.
"""

from __future__ import annotations

import signal
import sys

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
