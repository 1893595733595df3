"""Supervision metrics, per supervisor: children started, children's exits by reason kind,
restarts, give-ups, and the children in each state now (docs/observability.md).

One place for both backends (``rebeam run`` and the operator): each driver hands every event
it feeds its supervisor's core, with the commands the core answered, to :func:`handle`. The
restarts and give-ups are the core's notices (rebeam.supervision.notices), so a restart
counted here is a restart the driver announced.

Labels are the namespace and the supervisor's path; a reason is only its kind (normal,
shutdown, crash, killed, ...), never its text: the series stay bounded by the tree's shape.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from rebeam.exits import ExitKind
from rebeam.supervision import ChildExited, Command, Event, StartChild, StartFailed, Supervisor
from rebeam.supervision.core import ChildStatus
from rebeam.supervision.notices import notices

__all__ = ["SupervisionMetrics", "handle", "init"]

_LABELS = ("namespace", "supervisor")


class SupervisionMetrics:
    """The supervision families of one registry (the process's default one)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.starts = Counter(
            "rebeam_supervisor_child_starts",
            "Child starts a supervisor asked for (first starts and restarts).",
            _LABELS,
            registry=registry,
        )
        self.exits = Counter(
            "rebeam_supervisor_child_exits",
            "Children's ends (or failed starts) a supervisor saw, by reason kind.",
            (*_LABELS, "reason"),
            registry=registry,
        )
        self.restarts = Counter(
            "rebeam_supervisor_restarts",
            "Restarts a supervisor decided (one per restarting notice).",
            _LABELS,
            registry=registry,
        )
        self.give_ups = Counter(
            "rebeam_supervisor_give_ups",
            "Times a supervisor gave up: too many restarts in its period.",
            _LABELS,
            registry=registry,
        )
        self.children = Gauge(
            "rebeam_supervisor_children",
            "A supervisor's children, by state.",
            (*_LABELS, "state"),
            registry=registry,
        )
        self._known: set[tuple[str, str]] = set()

    def _first_seen(self, namespace: str, supervisor: str) -> None:
        """Every series of a new supervisor, at zero: a rate over a restart counter works
        from its first restart on, and a dashboard finds the series before anything fails."""
        self._known.add((namespace, supervisor))
        for counter in (self.starts, self.restarts, self.give_ups):
            counter.labels(namespace, supervisor)
        for kind in ExitKind:
            self.exits.labels(namespace, supervisor, kind.value)

    def observe(
        self,
        namespace: str,
        supervisor: str,
        core: Supervisor,
        event: Event | None,
        commands: list[Command],
    ) -> None:
        """Count what one step of ``core`` (``event`` in, ``commands`` out) tells."""
        if (namespace, supervisor) not in self._known:
            self._first_seen(namespace, supervisor)
        if isinstance(event, ChildExited | StartFailed):
            self.exits.labels(namespace, supervisor, event.reason.kind.value).inc()
        starts = sum(isinstance(c, StartChild) for c in commands)
        if starts:
            self.starts.labels(namespace, supervisor).inc(starts)
        for notice in notices(commands):
            if notice.kind == "restarting":
                self.restarts.labels(namespace, supervisor).inc()
            elif notice.kind == "gave_up":
                self.give_ups.labels(namespace, supervisor).inc()
        states = dict.fromkeys(ChildStatus, 0)
        for child in core.which_children():
            states[child.status] += 1
        for state, count in states.items():
            self.children.labels(namespace, supervisor, state.value).set(count)


_DEFAULT: SupervisionMetrics | None = None


def _default() -> SupervisionMetrics:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = SupervisionMetrics()
    return _DEFAULT


def handle(
    core: Supervisor, event: Event, now: float, namespace: str, supervisor: str
) -> list[Command]:
    """``core.handle(event, now)``, counted: what a driver calls instead of the core."""
    commands = core.handle(event, now)
    _default().observe(namespace, supervisor, core, event, commands)
    return commands


def init(core: Supervisor, now: float, namespace: str, supervisor: str) -> list[Command]:
    """``core.init(now)``, counted: the first starts of the supervisor's children."""
    commands = core.init(now)
    _default().observe(namespace, supervisor, core, None, commands)
    return commands
