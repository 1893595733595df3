"""The supervisor's vocabulary: flags, child specs and their defaults
(docs/semantics.md, "Flags", "Child specs").

These are plain frozen dataclasses with no I/O and no pydantic: the core is fed them by the
manifest layer (:mod:`rebeam.spec`), by the operator, or by tests directly.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

__all__ = [
    "BRUTAL_KILL",
    "DEFAULT_INTENSITY",
    "DEFAULT_PERIOD",
    "DEFAULT_WORKER_SHUTDOWN",
    "INFINITY",
    "AutoShutdown",
    "ChildSpec",
    "ChildType",
    "RestartType",
    "Shutdown",
    "Strategy",
    "SupervisorFlags",
]


class Strategy(enum.StrEnum):
    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"
    SIMPLE_ONE_FOR_ONE = "simple_one_for_one"


class RestartType(enum.StrEnum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class AutoShutdown(enum.StrEnum):
    NEVER = "never"
    ANY_SIGNIFICANT = "any_significant"
    ALL_SIGNIFICANT = "all_significant"


class ChildType(enum.StrEnum):
    WORKER = "worker"
    SUPERVISOR = "supervisor"


BRUTAL_KILL: Final = "brutal_kill"
INFINITY: Final = "infinity"

Shutdown: TypeAlias = float | Literal["brutal_kill", "infinity"]
"""How a child is stopped: ``brutal_kill`` (SIGKILL at once), a grace time in seconds
(SIGTERM, wait, then SIGKILL), or ``infinity`` (SIGTERM and wait for as long as it takes)."""

# Elixir's defaults, not Erlang's 1 restart in 5 s. A Python child is an OS process or a pod:
# two unlucky crashes within five seconds (a dependency blipping, say) are routine, and with
# Erlang's default the second one already takes the whole subtree down. Elixir made the same
# call for the same reason; the window (5 s) is the same in both.
DEFAULT_INTENSITY: Final = 3
DEFAULT_PERIOD: Final = 5.0
DEFAULT_WORKER_SHUTDOWN: Final = 5.0  # OTP: 5000 ms for workers, infinity for supervisors


@dataclass(frozen=True)
class SupervisorFlags:
    """Supervisor flags. ``max_children`` applies to simple_one_for_one only (None: no limit)."""

    strategy: Strategy = Strategy.ONE_FOR_ONE
    intensity: int = DEFAULT_INTENSITY
    period: float = DEFAULT_PERIOD
    auto_shutdown: AutoShutdown = AutoShutdown.NEVER
    max_children: int | None = None


@dataclass(frozen=True)
class ChildSpec:
    """One child. ``start`` is what the backend needs to start it (an actor template, a
    nested supervisor's spec): opaque to the core. ``args`` are the start arguments; for a
    simple_one_for_one child they are the template's args combined with start_child's."""

    id: str
    restart: RestartType = RestartType.PERMANENT
    shutdown: Shutdown | None = None  # None: the default for the child's type
    type: ChildType = ChildType.WORKER
    significant: bool = False
    start: Any = None
    args: Any = None

    @property
    def shutdown_policy(self) -> Shutdown:
        if self.shutdown is not None:
            return self.shutdown
        return INFINITY if self.type is ChildType.SUPERVISOR else DEFAULT_WORKER_SHUTDOWN


def flags_problems(flags: SupervisorFlags) -> list[str]:
    """What OTP's ``check_flags`` would refuse, as readable sentences (empty: all good)."""
    problems = []
    if flags.intensity < 0:
        problems.append(f"invalid intensity {flags.intensity}: must be 0 or more")
    if not flags.period > 0:
        problems.append(f"invalid period {flags.period}: must be more than 0")
    if flags.max_children is not None and flags.max_children < 0:
        problems.append(f"invalid max_children {flags.max_children}: must be 0 or more")
    if flags.strategy is Strategy.SIMPLE_ONE_FOR_ONE and flags.auto_shutdown is not (
        AutoShutdown.NEVER
    ):
        problems.append(
            f"bad combination: auto_shutdown {flags.auto_shutdown} with strategy simple_one_for_one"
        )
    return problems


def child_spec_problems(spec: ChildSpec, flags: SupervisorFlags) -> list[str]:
    """What OTP's ``check_childspec`` would refuse for this child under these flags."""
    problems = []
    if not spec.id:
        problems.append("missing id")
    shutdown = spec.shutdown
    if isinstance(shutdown, int | float) and shutdown < 0:
        problems.append(f"invalid shutdown {shutdown}: must be 0 or more")
    if spec.significant and spec.restart is RestartType.PERMANENT:
        problems.append(f"bad combination: child {spec.id} is significant and permanent")
    if spec.significant and flags.auto_shutdown is AutoShutdown.NEVER:
        problems.append(
            f"bad combination: child {spec.id} is significant but auto_shutdown is never"
        )
    return problems
