"""Manifests: the ``Supervisor`` and ``Actor`` resources both backends read.

``load_files`` reads YAML and returns resources or every problem found; ``to_core`` turns a
SupervisorSpec into the supervision core's flags and child specs; ``crdgen`` writes ``crds/``.
"""

from rebeam.spec.durations import format_duration, parse_duration
from rebeam.spec.loading import LoadResult, ManifestError, ManifestProblem, load_files, load_text
from rebeam.spec.models import (
    API_VERSION,
    MAX_NESTING,
    Actor,
    ActorSpec,
    ActorStatus,
    ActorTemplate,
    Child,
    ChildState,
    Condition,
    EnvVar,
    ExitSummary,
    MailboxSpec,
    ObjectMeta,
    Resource,
    Supervisor,
    SupervisorSpec,
    SupervisorStatus,
)
from rebeam.spec.rules import Problem, problems
from rebeam.spec.to_core import child_spec, child_specs, supervisor_flags

__all__ = [
    "API_VERSION",
    "MAX_NESTING",
    "Actor",
    "ActorSpec",
    "ActorStatus",
    "ActorTemplate",
    "Child",
    "ChildState",
    "Condition",
    "EnvVar",
    "ExitSummary",
    "LoadResult",
    "MailboxSpec",
    "ManifestError",
    "ManifestProblem",
    "ObjectMeta",
    "Problem",
    "Resource",
    "Supervisor",
    "SupervisorSpec",
    "SupervisorStatus",
    "child_spec",
    "child_specs",
    "format_duration",
    "load_files",
    "load_text",
    "parse_duration",
    "problems",
    "supervisor_flags",
]
