"""Manifests: the ``Supervisor`` and ``Actor`` resources both backends read.

``load_files`` reads YAML and returns resources or every problem found; ``to_core`` turns a
SupervisorSpec into the supervision core's flags and child specs; ``crdgen`` writes ``crds/``.
"""

from rebeam.spec import loading, models, to_core
from rebeam.spec.durations import format_duration, parse_duration
from rebeam.spec.loading import *  # noqa: F403
from rebeam.spec.models import *  # noqa: F403
from rebeam.spec.rules import Problem, problems
from rebeam.spec.to_core import *  # noqa: F403

# A module whose whole vocabulary is public is re-exported through its own __all__, so each
# of its names is listed once, where it is defined. Of the durations and the rules, only
# these concern a caller.
__all__ = [
    *loading.__all__,
    *models.__all__,
    *to_core.__all__,
    "Problem",
    "format_duration",
    "parse_duration",
    "problems",
]
