"""Re:BEAM - Erlang/OTP's supervision trees, registry and actor messaging for Python."""

from rebeam import errors
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
from rebeam.errors import *  # noqa: F403
from rebeam.exits import ExitReason
from rebeam.pids import Pid

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
