"""Named failpoints: the operator kills itself (SIGKILL) at a chosen step of a pass, so tests
can prove that a crash at that step loses nothing and doubles nothing.

Off unless ``REBEAM_OPERATOR_FAILPOINT`` names a point, as ``<name>`` (the first time it is
reached) or ``<name>:<n>`` (the n-th time). Several may be armed, comma-separated. A point is
only counted where the pass does something there (a decision to persist, a pod created, ...):
a tree at rest reaches none, so a test can arm a point in a steady state and know the first
hit comes from the scenario it starts next.

``REBEAM_OPERATOR_FAILPOINT_FILE`` names a file holding the same spec instead, read again
whenever it changes: a test arms a running operator without paying for a restart (counts start
afresh when the spec changes; an empty file disarms).

Each point is a call to :func:`hit` with a name from :data:`POINTS`; with nothing armed it is
one dictionary lookup (and a read of the file, if one is named). The process dies by
SIGKILL, as a kill -9 or an OOM kill would: no ``finally`` runs, no buffer is flushed except
the one log line written just before.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Final

__all__ = ["ENV", "ENV_FILE", "POINTS", "arm", "armed", "hit", "watch"]

ENV: Final = "REBEAM_OPERATOR_FAILPOINT"
ENV_FILE: Final = "REBEAM_OPERATOR_FAILPOINT_FILE"

# Every point of a pass where a crash matters, in the order a pass reaches them.
POINTS: Final = (
    "decided",  # observed and fed the core; nothing of it persisted yet
    "created-unpersisted",  # a pass's new pods created; its status write not issued yet
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
_file: dict[str, str | None] = {}  # "path", and "seen": the spec last read from it


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


def watch(path: str | None) -> None:
    """Take the spec from the file ``path`` from now on (read at once and on every change);
    ``None`` stops watching and leaves what is armed."""
    _file.clear()
    if path:
        _file["path"] = path
        _reread()


def _reread() -> None:
    # The content, not the mtime: two writes within one clock tick keep the mtime, and hits
    # are rare (only where a pass does something), so reading a few bytes costs nothing.
    path = _file.get("path")
    if not isinstance(path, str):
        return
    try:
        with open(path) as source:
            spec: str | None = source.read()
    except FileNotFoundError:
        spec = None
    if spec == _file.get("seen"):
        return
    _file["seen"] = spec
    try:
        arm(spec)
    except ValueError as exc:  # a test's typo: say it where the test looks, and disarm
        sys.stderr.write(f"{exc}\n")
        arm(None)


def hit(name: str) -> None:
    """Count a pass through point ``name``; die by SIGKILL on the armed n-th time."""
    assert name in POINTS, name
    _reread()
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
watch(os.environ.get(ENV_FILE))
