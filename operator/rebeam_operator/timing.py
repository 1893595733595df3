"""When a driver's next pass runs: what a pass returns (:class:`Result`, done or requeue after
so many seconds, as controller-runtime's ``Result{RequeueAfter}``), how long a driver at rest
waits (:func:`requeue_after`), and how a failing pass backs off (:class:`Backoff`).

A requeue is a deadline, not a sleep: an event of the driver's objects (a watch, a
management request) starts the next pass sooner. A failed pass is retried after a delay that
doubles from :data:`BACKOFF_FIRST` up to :data:`BACKOFF_CAP` and starts again from the first
once a pass succeeds; events do not cut it short, so a driver whose API calls fail does not
spin on every pod event. docs/operator.md, "How the driver is built", gives the numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from rebeam.spec.models import Child
from rebeam.supervision import ChildStatus, Supervisor
from rebeam_operator.children import manifest_child
from rebeam_operator.observation import created_at

__all__ = [
    "BACKOFF_CAP",
    "BACKOFF_FIRST",
    "BUSY_TICK",
    "DONE",
    "MIN_TICK",
    "Backoff",
    "Result",
    "requeue_after",
]

Json = dict[str, Any]

BUSY_TICK: Final = 1.0  # seconds between passes while something is under way
MIN_TICK: Final = 0.05
BACKOFF_FIRST: Final = 0.5  # seconds after a first failed pass
BACKOFF_CAP: Final = 30.0  # the longest wait between failed passes


@dataclass(frozen=True)
class Result:
    """What a pass says should happen next."""

    done: bool = False  # the driver is finished (its object is gone)
    requeue_after: float = 0.0  # otherwise: the next pass at the latest after this long


DONE: Final = Result(done=True)


class Backoff:
    """Capped exponential delays between failed passes."""

    def __init__(self, first: float = BACKOFF_FIRST, cap: float = BACKOFF_CAP) -> None:
        self._first = first
        self._cap = cap
        self._failures = 0

    def failed(self) -> float:
        """One more failure in a row: how long to wait before the next pass."""
        delay = min(self._cap, self._first * 2.0**self._failures)
        self._failures = min(self._failures + 1, 32)  # 2**32 * first is past any cap
        return delay

    def succeeded(self) -> None:
        self._failures = 0


def requeue_after(
    core: Supervisor | None,
    *,
    busy: bool,
    resync: float,
    pods: Mapping[str, Json],
    pod_name: Callable[[str, int], str],
    now: float,
) -> float:
    """How long to wait for an event before the next pass: a second while a plan, a stop
    or a deletion is under way (``busy``); while children only start, until the first of
    their startTimeouts runs out (their pods' events wake the driver sooner); otherwise the
    resync period. A driver per Supervisor polling every second while its children
    started one by one was most of the operator's CPU at 2,000 pods."""
    if core is None or core.busy or busy:
        return BUSY_TICK
    tick = resync
    for info in core.which_children():
        if info.status is ChildStatus.STOPPING:
            return BUSY_TICK
        if info.status is ChildStatus.STARTING:
            spec = manifest_child(core, info.id)
            pod = pods.get(pod_name(info.id, info.incarnation or 0))
            tick = min(tick, _start_deadline(spec, pod, now) - now)
    return max(tick, MIN_TICK)


def _start_deadline(spec: Child | None, pod: Json | None, now: float) -> float:
    """When a starting child's startTimeout runs out (from its pod's creation), or a
    second from now while its pod is not seen yet."""
    created = created_at(pod) if pod is not None else None
    if spec is None or created is None:
        return now + BUSY_TICK
    return created + spec.start_timeout
