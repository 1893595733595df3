"""Named failpoints: the operator kills itself (SIGKILL) at a chosen step of a pass, so tests
can prove that a crash at that step loses nothing and doubles nothing.

Off unless ``REBEAM_OPERATOR_FAILPOINT`` names a point, as ``<name>`` (the first time it is
reached) or ``<name>:<n>`` (the n-th time). Several may be armed, comma-separated. A point is
only counted where the pass does something there (a decision to persist, a pod created, ...):
a tree at rest reaches none, so a test can arm a point in a steady state and know the first
hit comes from the scenario it starts next.

Each point is a call to :func:`hit` with a name from :data:`POINTS`; with nothing armed it is
one dictionary lookup. The process dies by SIGKILL, as a kill -9 or an OOM kill would: no
``finally`` runs, no buffer is flushed except the one log line written just before.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Final

__all__ = ["ENV", "POINTS", "arm", "armed", "hit"]

ENV: Final = "REBEAM_OPERATOR_FAILPOINT"

# Every point of a pass where a crash matters, in the order a pass reaches them.
POINTS: Final = (
    "decided",  # observed and fed the core; nothing of it persisted yet
    "persisted",  # the decision is in status; no command carried out yet
    "pod-created",  # one pod of a starting incarnation created (between creates)
    "pod-stopping",  # one pod of a stopping incarnation deleted with its grace (between stops)
    "carried-out",  # starts and stops issued; notifications not sent
    "notice-sent",  # one notification sent; the outbox not yet cleared in status
    "notified",  # notifications sent and cleared; old pods not collected yet
    "supervisor-asked",  # a child Supervisor asked to start or stop (annotation written)
    "subtree-killed",  # a child Supervisor's subtree force-deleted; its exit not yet fed
)

_armed: dict[str, int] = {}
_counts: dict[str, int] = {}


def arm(spec: str | None) -> None:
    """Arm the points of ``spec`` (the env var's syntax); ``None`` or ``""`` disarms all."""
    _armed.clear()
    _counts.clear()
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, _, nth = item.partition(":")
        if name not in POINTS:
            raise ValueError(f"{ENV}: unknown failpoint {name!r} (known: {', '.join(POINTS)})")
        count = int(nth) if nth else 1
        if count < 1:
            raise ValueError(f"{ENV}: {item!r}: the count must be at least 1")
        _armed[name] = count


def armed() -> dict[str, int]:
    return dict(_armed)


def hit(name: str) -> None:
    """Count a pass through point ``name``; die by SIGKILL on the armed n-th time."""
    assert name in POINTS, name
    nth = _armed.get(name)
    if nth is None:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] == nth:
        # One line a test can find in the log, then the same death as kill -9.
        sys.stderr.write(f'{{"failpoint": "{name}", "hit": {nth}, "action": "SIGKILL"}}\n')
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


arm(os.environ.get(ENV))
