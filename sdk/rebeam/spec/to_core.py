"""From manifest models to the supervision core's flags and child specs.

The core knows nothing of YAML or pydantic; this is the one place that translates. A child's
``start`` carries the manifest's ``Child`` so a backend knows what to run.
"""

from __future__ import annotations

from rebeam.spec.models import Child, SupervisorSpec
from rebeam.supervision.childspec import ChildSpec, ChildType, SupervisorFlags

__all__ = ["child_spec", "child_specs", "supervisor_flags"]


def supervisor_flags(spec: SupervisorSpec) -> SupervisorFlags:
    return SupervisorFlags(
        strategy=spec.strategy,
        intensity=spec.intensity,
        period=spec.period,
        auto_shutdown=spec.auto_shutdown,
        max_children=spec.max_children,
    )


def child_spec(child: Child) -> ChildSpec:
    return ChildSpec(
        id=child.name,
        restart=child.restart,
        shutdown=child.shutdown,  # type: ignore[arg-type]  # validated: seconds or a keyword
        type=ChildType.SUPERVISOR if child.supervisor is not None else ChildType.WORKER,
        significant=child.significant,
        start=child,
        args=child.actor.args if child.actor is not None else None,
    )


def child_specs(spec: SupervisorSpec) -> list[ChildSpec]:
    """The static children in start order; for simple_one_for_one, the one template."""
    if spec.child_template is not None:
        return [child_spec(spec.child_template)]
    return [child_spec(c) for c in spec.children]
