"""The supervision core: OTP supervisor semantics as a pure state machine (no I/O, no clock).

Both backends drive it: the local runtime (``rebeam run``) and the Kubernetes operator feed a
:class:`Supervisor` what they observe and carry out what it commands. See ``core.py`` for the
engine and ``messages.py`` for the events and commands.
"""

from rebeam.supervision import childspec, core, dynamic, intensity, messages, policy
from rebeam.supervision.childspec import *  # noqa: F403
from rebeam.supervision.core import *  # noqa: F403
from rebeam.supervision.dynamic import *  # noqa: F403
from rebeam.supervision.intensity import *  # noqa: F403
from rebeam.supervision.messages import *  # noqa: F403
from rebeam.supervision.policy import *  # noqa: F403
from rebeam.supervision.snapshots import SnapshotError, StartCodec

# Each module's __all__ names its public vocabulary, so a name is listed once, where it is
# defined. Of the snapshot forms only the error and the codec concern a caller: a backend
# keeps a snapshot through Supervisor.snapshot and Supervisor.restore.
__all__ = [
    *childspec.__all__,
    *core.__all__,
    *dynamic.__all__,
    *intensity.__all__,
    *messages.__all__,
    *policy.__all__,
    "SnapshotError",
    "StartCodec",
]
