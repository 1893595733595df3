"""Every NATS subject and KV bucket name rebeam uses, built in one place.

::

    rebeam.<ns>.pid.<slot>.<incarnation>           a mailbox (one per incarnation)
    rebeam.<ns>.stats.<slot>.<incarnation>         a node's counters (answered beside the mailbox)
    rebeam.<ns>.fence.<slot>                       "incarnation N started": older ones stop
    rebeam.<ns>.events.<event>.<slot>.<incarnation> lifecycle events (started, exited, ...)
    _INBOX_rebeam.<ns>.<pid tokens>.<token>        call replies to one node
    KV bucket rebeam_<ns>                          the global registry (names, keys, groups)
    KV bucket rebeam_<ns>_local                    the local scopes (memory storage)
"""

from __future__ import annotations

from rebeam.pids import Pid

__all__ = [
    "events",
    "events_of",
    "fence",
    "global_bucket",
    "inbox_prefix",
    "local_bucket",
    "mailbox",
    "stats",
]


def mailbox(pid: Pid) -> str:
    return f"rebeam.{pid.namespace}.pid.{pid.tokens}"


def stats(pid: Pid) -> str:
    return f"rebeam.{pid.namespace}.stats.{pid.tokens}"


def fence(pid: Pid) -> str:
    return f"rebeam.{pid.namespace}.fence.{pid.slot_token}"


def events(namespace: str, event: str, pid: Pid | None) -> str:
    tail = pid.tokens if pid is not None else "_._"
    return f"rebeam.{namespace}.events.{event}.{tail}"


def events_of(pid: Pid, event: str = "exited") -> str:
    return events(pid.namespace, event, pid)


def inbox_prefix(pid: Pid) -> str:
    return f"_INBOX_rebeam.{pid.namespace}.{pid.tokens}"


def global_bucket(namespace: str) -> str:
    return f"rebeam_{namespace}"


def local_bucket(namespace: str) -> str:
    return f"rebeam_{namespace}_local"
