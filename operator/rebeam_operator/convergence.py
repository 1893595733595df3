"""An edited manifest applied to a running tree (``kubectl apply``): what changes, in OTP's
terms, decided here and carried out by the supervision core.

The driver keeps in status the spec the core was last given (``appliedSpec``). When the
object's spec differs from it, :func:`plan` turns the difference into core requests, fed in
one pass and persisted with the snapshot (so an operator killed half-way carries on: the
requests wait in the core's mailbox, in the snapshot):

* flags (strategy, intensity, period, autoShutdown, maxChildren) are in force at once
  (``Supervisor.change_flags``); the restart history is kept;
* a removed child: ``terminate_child`` (with its shutdown) then ``delete_child``;
* a changed child: ``ReplaceChildRequest`` — its incarnation is stopped and started again
  under the new spec, one child at a time, no restart counted, no strategy applied;
* an added child: ``start_child``, which appends it to the end of the start order (OTP);
  the order of the children kept is not changed either;
* a simple_one_for_one template: in force for the children started from then on and for
  restarts (``Supervisor.change_template``); running children are not touched;
* a nested supervisor's own spec is not the parent's business: the parent writes it to the
  child Supervisor object, whose driver converges it (:func:`nested_spec_patch`).

A change the core refuses (switching to or from simple_one_for_one, a significant child
under autoShutdown never, ...) is refused as a whole: nothing of that generation is applied,
and the Ready condition says why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rebeam.spec import rules
from rebeam.spec.models import API_VERSION, Child, ObjectMeta, SupervisorSpec
from rebeam.spec.models import Supervisor as SupervisorObject
from rebeam.spec.to_core import child_spec, child_specs, supervisor_flags
from rebeam.supervision import (
    DeleteChildRequest,
    Event,
    ReplaceChildRequest,
    StartChildRequest,
    Supervisor,
    SupervisorSpecError,
    TerminateChildRequest,
)
from rebeam_operator.children import spec_replacing
from rebeam_operator.status import condition

__all__ = ["Plan", "applied_spec", "dump", "nested_spec_patch", "plan", "refusal"]

Json = dict[str, Any]

PREFIX = "converge/"


def dump(spec: SupervisorSpec | Child) -> Json:
    dumped: Json = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


def applied_spec(status: Json, fallback: SupervisorSpec) -> SupervisorSpec:
    """The spec the core was last given, as status keeps it (the object's own spec when
    status predates convergence)."""
    stored = status.get("appliedSpec")
    if not stored:
        return fallback
    return SupervisorSpec.model_validate(json.loads(stored))


def same(applied: SupervisorSpec, desired: SupervisorSpec) -> bool:
    """Nothing to converge: equal but for the order of the children (a new order is not
    applied to a running tree, so the applied spec keeps its own)."""

    def canonical(spec: SupervisorSpec) -> Json:
        data = dump(spec)
        data["children"] = sorted(data.get("children") or [], key=lambda c: str(c["name"]))
        return data

    return canonical(applied) == canonical(desired)


def _without_nested(child: Child) -> Json:
    """What of a child is its parent's to converge (a nested spec is its own driver's)."""
    data = dump(child)
    data.pop("supervisor", None)
    data["nested"] = child.supervisor is not None
    return data


@dataclass
class Plan:
    events: list[Event] = field(default_factory=list)
    applied: SupervisorSpec | None = None  # what the core is given by this plan
    problems: list[str] = field(default_factory=list)

    def describe(self, generation: int) -> str:
        """One line for a Kubernetes Event: what this generation changes."""
        parts = []
        for event in self.events:
            if isinstance(event, TerminateChildRequest):
                parts.append(f"removing {event.child}")
            elif isinstance(event, ReplaceChildRequest):
                parts.append(f"replacing {event.spec.id}")
            elif isinstance(event, StartChildRequest) and event.spec is not None:
                parts.append(f"adding {event.spec.id}")
        return f"generation {generation}: " + ("; ".join(parts) or "new flags")

    @property
    def request_ids(self) -> list[str]:
        return [str(getattr(e, "request_id", "")) for e in self.events]


def plan(
    core: Supervisor, applied: SupervisorSpec, desired: SupervisorSpec, generation: int
) -> Plan:
    """The requests that take ``core`` from ``applied`` to ``desired`` (flags and template
    are changed in the core right away). Empty when there is nothing to do."""
    if same(applied, desired):
        return Plan()
    out = Plan()
    old_flags, new_flags = supervisor_flags(applied), supervisor_flags(desired)
    template_changed = (applied.child_template is None) != (desired.child_template is None) or (
        desired.child_template is not None
        and applied.child_template is not None
        and dump(applied.child_template) != dump(desired.child_template)
    )
    try:
        if new_flags != old_flags:
            core.change_flags(new_flags)
        if template_changed and desired.child_template is not None:
            core.change_template(child_spec(desired.child_template))
    except SupervisorSpecError as exc:
        core.change_flags(old_flags)  # nothing of a refused generation is applied
        out.problems = list(exc.problems)
        return out

    serial = 0

    def rid() -> str:
        nonlocal serial
        serial += 1
        return f"{PREFIX}{generation}/{serial}"

    wanted = {c.name: c for c in desired.children}
    had = {c.name: c for c in applied.children}
    for child in reversed(applied.children):  # removed: newest first, as a shutdown
        if child.name not in wanted:
            out.events.append(TerminateChildRequest(rid(), child.name))
            out.events.append(DeleteChildRequest(rid(), child.name))
    kept = [wanted[c.name] for c in applied.children if c.name in wanted]
    for child in kept:
        if _without_nested(child) != _without_nested(had[child.name]):
            out.events.append(ReplaceChildRequest(rid(), child_spec(child)))
    added = [c for c in desired.children if c.name not in had]
    for child in added:
        out.events.append(StartChildRequest(rid(), spec=child_spec(child)))
    out.applied = desired.model_copy(update={"children": kept + added})
    return out


def refusal(spec: SupervisorSpec) -> str | None:
    """Why ``spec`` cannot be run at all, in the words ``rebeam validate`` and the core use
    (None: it can). Admission checks the CRD, but not every rule (a command's args, which
    the schema leaves untyped) nor an object stored under an older CRD."""
    resource = SupervisorObject.model_construct(
        api_version=API_VERSION,
        kind="Supervisor",
        metadata=ObjectMeta.model_construct(name="spec"),
        spec=spec,
    )
    broken = rules.problems(resource)
    if broken:  # the core would say the same of most of them, in its own words
        return "; ".join(f"{_field(p.path)}: {p.message}" for p in broken)
    try:
        Supervisor(supervisor_flags(spec), child_specs(spec))
    except SupervisorSpecError as exc:
        return "; ".join(exc.problems)
    return None


def _field(path: tuple[str | int, ...]) -> str:
    return ".".join(str(part) for part in path)


def nested_spec_patch(child: Child, obj: Json) -> Json | None:
    """The merge patch that gives a child Supervisor object the nested spec its parent's
    manifest now says, if it says something else."""
    if child.supervisor is None:
        return None
    wanted = dump(child.supervisor)
    current = SupervisorSpec.model_validate(obj.get("spec") or {})
    if dump(current) == wanted:
        return None
    return spec_replacing(obj.get("spec") or {}, wanted)


def converged_condition(
    previous: Json, *, generation: int, pending: int, problem: Json | None
) -> Json:
    """The ``Converged`` condition: is the object's latest spec what the tree runs?"""
    old = list(previous.get("conditions") or [])
    if problem and problem.get("generation") == generation:
        return condition(
            old, "Converged", "False", "SpecRefused", str(problem.get("message")), generation
        )
    if pending:
        message = f"{pending} change(s) of generation {generation} under way"
        return condition(old, "Converged", "False", "Converging", message, generation)
    return condition(old, "Converged", "True", "SpecApplied", "", generation)
