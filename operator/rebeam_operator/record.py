"""A driver's record: what it keeps in its object's status to carry on after an operator
restart, beside what users read there. Status is the only memory the operator trusts.

:func:`parse` reads a record from a status and :func:`to_status` builds the status a record
and a core make; both are pure. The record's fields, and the status keys they are kept under:

* ``seq``: how many status writes this object has had (a check that nobody else wrote it);
* ``fed`` (``fed``): the child events fed to the core, ``<child>#<incarnation>#up|end``;
* ``outbox``: the notices decided and not sent yet (notices.py);
* ``child_exits`` (``childExits``): how each child last ended;
* ``incarnation`` (``supervisorIncarnation``) and ``shutdown_fed`` (``shutdownFed``): the
  incarnation the core runs, and the last one a shutdown was fed to;
* ``gave_up`` (``gaveUpMessage``), ``init_failed`` (``initFailed``), ``exit_reason``
  (``exitReason``): how the core ended;
* ``stops_asked`` (``stopsAsked``) and ``killed`` (``killedIncarnation``): subtrees.py;
* ``applied`` (``appliedSpec``), ``converging`` (``convergePending``), ``converge_problem``
  (``convergeProblem``): convergence.py; the core itself is ``coreSnapshot``;
* ``invalid`` (``invalidSpec``): why the object's spec cannot be run at all, as last told
  (the ``SpecValid`` condition and one ``InvalidSpec`` Event per distinct reason).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rebeam.spec.models import SupervisorSpec
from rebeam.spec.to_core import child_specs, supervisor_flags
from rebeam.supervision import Supervisor
from rebeam.supervision.notices import Notice
from rebeam_operator import convergence
from rebeam_operator.children import CODEC
from rebeam_operator.hosts import Host
from rebeam_operator.status import build_status, condition, phase_of

__all__ = [
    "SPEC_VALID",
    "Record",
    "fed_key",
    "parse",
    "refused_status",
    "restore_core",
    "to_status",
]

Json = dict[str, Any]

SPEC_VALID = "SpecValid"  # the condition of whether the object's spec can be run


@dataclass
class Record:
    seq: int = 0
    fed: set[str] = field(default_factory=set)
    outbox: list[Json] = field(default_factory=list)
    child_exits: dict[str, Json] = field(default_factory=dict)
    incarnation: int = 0
    shutdown_fed: int = 0
    gave_up: str | None = None
    init_failed: Json | None = None
    exit_reason: Any = None
    stops_asked: dict[str, float] = field(default_factory=dict)  # child#incarnation -> when
    killed: int = 0  # the incarnation the parent killed, once acknowledged
    applied: SupervisorSpec | None = None  # the spec the core was given
    converging: list[str] = field(default_factory=list)  # convergence requests not answered
    converged_generation: int = 0
    converge_problem: Json | None = None  # a refused generation and why
    invalid: Json | None = None  # a spec that cannot be run: its generation and why
    written: Json | None = None  # the status last written (or read)
    dirty: bool = False  # the core moved on and status does not say so yet (memory only)
    # The applied and desired specs last found equal (memory only): comparing them dumps both,
    # and a driver did so on every pass, though they change only with an edit.
    unchanged: tuple[SupervisorSpec, SupervisorSpec] | None = field(default=None, compare=False)
    # The applied spec and its JSON in status (memory only): dumped once, not on every write.
    applied_dumped: tuple[SupervisorSpec, str] | None = field(default=None, compare=False)

    def begin_incarnation(self, incarnation: int, spec: SupervisorSpec) -> None:
        """A fresh core runs ``incarnation`` of ``spec``: forget how the last one went."""
        self.applied = spec
        self.invalid = None
        self.converging = []
        self.converge_problem = None
        self.incarnation = incarnation
        self.fed = set()
        self.gave_up = None
        self.init_failed = None
        self.exit_reason = None

    def note(self, notice: Notice, *, intensity: Any, period: float) -> None:
        """Keep a notice the core gave, to persist with its decision and send after."""
        if notice.kind == "gave_up":
            self.gave_up = (
                f"{notice.child} exited ({notice.reason}); reached max restart intensity "
                f"{intensity} in {period:g}s: all children stopped, exiting shutdown"
            )
        elif notice.kind == "init_failed":
            assert notice.reason is not None
            self.init_failed = {"child": notice.child, "reason": notice.reason.to_wire()}
        if notice.exit_reason is not None:
            self.exit_reason = notice.exit_reason.to_wire()
        self.outbox.append(notice.to_json())

    def observed_generation(self, generation: int) -> int:
        """A generation is observed once every change it asked for is carried out."""
        if not self.converging:
            self.converged_generation = generation
        return self.converged_generation

    def stopping(self, host: Host) -> bool:
        """The object asks the incarnation the core runs to stop (deleted, or by its parent)."""
        return host.deleting or bool(
            host.stop_incarnation and host.stop_incarnation >= self.incarnation
        )

    def forget_fed(self, core: Supervisor) -> None:
        """Forget the events fed for incarnations that are over."""
        self.fed &= {
            fed_key(i.id, i.incarnation or 0, kind)
            for i in core.which_children()
            for kind in ("up", "end")
        }


def fed_key(child: str, incarnation: int, kind: str) -> str:
    return f"{child}#{incarnation}#{kind}"


def parse(status: Json, spec: SupervisorSpec) -> Record:
    """The record a status keeps (``spec``, the object's own, where it predates convergence)."""
    return Record(
        seq=int(status.get("seq", 0)),
        fed=set(status.get("fed") or []),
        outbox=list(status.get("outbox") or []),
        child_exits=dict(status.get("childExits") or {}),
        incarnation=int(status.get("supervisorIncarnation", 0)),
        shutdown_fed=int(status.get("shutdownFed", 0)),
        gave_up=status.get("gaveUpMessage"),
        init_failed=status.get("initFailed"),
        exit_reason=status.get("exitReason"),
        stops_asked=dict(status.get("stopsAsked") or {}),
        killed=int(status.get("killedIncarnation", 0)),
        applied=convergence.applied_spec(status, spec),
        converging=list(status.get("convergePending") or []),
        converged_generation=int(status.get("observedGeneration") or 0),
        converge_problem=status.get("convergeProblem"),
        invalid=status.get("invalidSpec"),
        written=status,
    )


def restore_core(status: Json, applied: SupervisorSpec) -> Supervisor | None:
    """The core a status keeps, None if it keeps none. Raises if its snapshot is unreadable."""
    snapshot = status.get("coreSnapshot")
    if not snapshot:
        return None
    flags, specs = supervisor_flags(applied), child_specs(applied)
    return Supervisor.restore(flags, specs, json.loads(snapshot), CODEC)


def _phase(record: Record, core: Supervisor, host: Host) -> str:
    phase = phase_of(
        core,
        stopping=record.stopping(host),
        gave_up=record.gave_up is not None,
        init_failed=record.init_failed is not None,
    )
    if record.converging and phase in ("Running", "Restarting"):
        phase = "Converging"
    if record.killed and record.killed >= record.incarnation:
        phase = "Terminated"  # killed by the parent: the core stopped where it was
    return phase


def _applied_json(record: Record, spec: SupervisorSpec) -> str:
    """``spec`` as status keeps it, dumped once per spec rather than on every write."""
    memo = record.applied_dumped
    if memo is None or memo[0] is not spec:
        memo = record.applied_dumped = (spec, json.dumps(convergence.dump(spec)))
    return memo[1]


def _kept(record: Record, core: Supervisor, host: Host, seq: int) -> Json:
    """The status keys of the record (the module says what each is)."""
    kept: Json = {
        "coreSnapshot": json.dumps(core.snapshot(CODEC), separators=(",", ":")),
        "seq": seq,
        "fed": sorted(record.fed),
        "outbox": record.outbox,
        "supervisorIncarnation": record.incarnation,
        "shutdownFed": record.shutdown_fed,
        "childExits": record.child_exits,
        "path": host.path,
        "appliedSpec": _applied_json(record, record.applied or host.spec),
        "convergePending": record.converging,
        "stopsAsked": record.stops_asked,
        "killedIncarnation": record.killed,
    }
    for key, value in (
        ("gaveUpMessage", record.gave_up),
        ("initFailed", record.init_failed),
        ("exitReason", record.exit_reason),
        ("convergeProblem", record.converge_problem),
        ("invalidSpec", record.invalid),
    ):
        if value is not None:
            kept[key] = value
    return kept


def to_status(
    record: Record, core: Supervisor, host: Host, pids: dict[str, str], now: float
) -> Json:
    """The whole status of the record's next write (``seq`` one up): what users read, and
    the record beside it."""
    status = build_status(
        core,
        now=now,
        generation=record.observed_generation(host.generation),
        previous=record.written or {},
        pids=pids,
        child_exits=record.child_exits,
        phase=_phase(record, core, host),
        gave_up_message=record.gave_up,
        extra=_kept(record, core, host, record.seq + 1),
    )
    status["conditions"].append(
        convergence.converged_condition(
            record.written or {},
            generation=host.generation,
            pending=len(record.converging),
            problem=record.converge_problem,
        )
    )
    valid = _spec_valid(record, host.generation)
    if valid is not None:
        status["conditions"].append(valid)
    if host.standalone_actor:
        status.update(_actor_fields(core, host, pids, record.child_exits))
    return status


def refused_status(record: Record, host: Host) -> Json:
    """The next status of an object whose spec cannot be run and that has no core: what it
    showed before, phase ``Failed``, ``SpecValid`` false with the reason, and the record."""
    status = dict(record.written or {})
    kept = [c for c in status.get("conditions") or [] if c.get("type") != SPEC_VALID]
    valid = _spec_valid(record, host.generation)
    status.update(
        phase="Failed",
        observedGeneration=host.generation,
        conditions=kept + ([valid] if valid is not None else []),
        seq=record.seq + 1,
        outbox=record.outbox,
        invalidSpec=record.invalid,
        path=host.path,
    )
    return status


def _spec_valid(record: Record, generation: int) -> Json | None:
    """The ``SpecValid`` condition: false while the spec cannot be run; shown as true again
    once it can, and absent on an object whose spec was never refused."""
    previous = list((record.written or {}).get("conditions") or [])
    if record.invalid is not None:
        message = str(record.invalid.get("message"))
        return condition(previous, SPEC_VALID, "False", "InvalidSpec", message, generation)
    if any(c.get("type") == SPEC_VALID for c in previous):
        return condition(previous, SPEC_VALID, "True", "SpecAccepted", "", generation)
    return None


def _actor_fields(
    core: Supervisor, host: Host, pids: dict[str, str], exits: dict[str, Json]
) -> Json:
    """An Actor applied on its own shows its one child's state at the top of its status."""
    info = core.child(host.name)
    inc = core.incarnations.get(host.name, 0)
    fields: Json = {
        "incarnation": inc,
        "pod": host.pod_name(host.name, inc) if inc else None,
        "pid": pids.get(host.name),
        "restarts": max(0, inc - 1),
    }
    if info is not None:
        fields["childState"] = info.status.value
    if host.name in exits:
        fields["lastExit"] = exits[host.name]
    return {k: v for k, v in fields.items() if v is not None}
