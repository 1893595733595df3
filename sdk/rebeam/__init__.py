"""Re:BEAM - Erlang/OTP's supervision trees, registry and actor messaging for Python.

Every name of ``__all__`` is importable from here (``rebeam.Actor``, ``from rebeam import
call``), but the module that defines it is imported on first use: ``import rebeam`` alone, as
every ``rebeam`` command and every ``rebeam.<submodule>`` import does, does not wait for
nats-py, aiohttp and msgpack (docs/sdk.md, "A fast command line"). The errors are light and
are here at once.
"""

import importlib
import typing

from rebeam import errors
from rebeam.errors import *  # noqa: F403

if typing.TYPE_CHECKING:  # what type checkers and IDEs see; at run time, __getattr__ below
    from rebeam._actor import NOREPLY, Actor, Timer
    from rebeam._addresses import Address, Name, Via
    from rebeam._api import (
        broadcast,
        call,
        cast,
        connect,
        current_node,
        demonitor,
        join,
        leave,
        link,
        members,
        monitor,
        register,
        self_pid,
        send,
        stats,
        trap_exit,
        unlink,
        unregister,
        whereis,
    )
    from rebeam._codec import message
    from rebeam._groups import Registry
    from rebeam._management import delete_child, restart_child, start_child, terminate_child
    from rebeam._messages import Down, Exit, From, MonitorRef
    from rebeam._node import Node
    from rebeam.exits import ExitReason
    from rebeam.pids import Pid

_HOMES = {
    "rebeam._actor": ("NOREPLY", "Actor", "Timer"),
    "rebeam._addresses": ("Address", "Name", "Via"),
    "rebeam._api": (
        "broadcast",
        "call",
        "cast",
        "connect",
        "current_node",
        "demonitor",
        "join",
        "leave",
        "link",
        "members",
        "monitor",
        "register",
        "self_pid",
        "send",
        "stats",
        "trap_exit",
        "unlink",
        "unregister",
        "whereis",
    ),
    "rebeam._codec": ("message",),
    "rebeam._groups": ("Registry",),
    "rebeam._management": ("delete_child", "restart_child", "start_child", "terminate_child"),
    "rebeam._messages": ("Down", "Exit", "From", "MonitorRef"),
    "rebeam._node": ("Node",),
    "rebeam.exits": ("ExitReason",),
    "rebeam.pids": ("Pid",),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}


if not typing.TYPE_CHECKING:  # hidden from type checkers: a misspelt name stays an error

    def __getattr__(name: str) -> object:
        """A public name not imported yet: import its module, and keep the name here so
        that the next look-up is an ordinary one."""
        home = _HOME_OF.get(name)
        if home is None:
            raise AttributeError(f"module 'rebeam' has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


# The exceptions are listed once, in rebeam.errors.
__all__ = [
    *errors.__all__,
    "NOREPLY",
    "Actor",
    "Address",
    "Down",
    "Exit",
    "ExitReason",
    "From",
    "MonitorRef",
    "Name",
    "Node",
    "Pid",
    "Registry",
    "Timer",
    "Via",
    "broadcast",
    "call",
    "cast",
    "connect",
    "current_node",
    "delete_child",
    "demonitor",
    "join",
    "leave",
    "link",
    "members",
    "message",
    "monitor",
    "register",
    "restart_child",
    "self_pid",
    "send",
    "start_child",
    "stats",
    "terminate_child",
    "trap_exit",
    "unlink",
    "unregister",
    "whereis",
]
__version__ = "0.1.0"
