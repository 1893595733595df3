"""Grants: who a connection is, and the least it may publish and subscribe.

A grant is made by the backend that starts a process (``rebeam run`` locally, the operator on
Kubernetes) and is bound to one credential; :func:`permissions` turns it into the NATS
permissions the server enforces for that connection. It is pure: no I/O, tested on its own
(docs/security.md, "Who may say what", explains each rule).

Roles:

* ``ACTOR`` — one incarnation of a supervised child. It receives on its own mailbox, inboxes,
  fence and stats subjects; it sends to any mailbox *as itself* (its pid is in every subject it
  may publish on); it writes only its own registry records, the names its manifest declares,
  and its own lease; it reads lifecycle events; it never publishes events, fences, slot
  records or management requests, and never creates or deletes streams.
* ``ADMIN`` — the person who owns the tree (``rebeam`` CLI, or a program they run with
  :func:`rebeam.connect`). Like an actor, but its pid is a client pid it picks when it
  connects, and it may also make management requests and write any registry record (it
  manages the tree: it may release a dead pid's names) except slot records.
* ``BACKEND`` — the supervisor itself: everything in its namespace's account.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from rebeam import _subjects
from rebeam._durable_stream import consumer_name, stream_name
from rebeam._subjects import js_api, kv
from rebeam.pids import Pid, escape_token

__all__ = ["Grant", "Role", "client_pid_allowed", "permissions"]


class Role(enum.Enum):
    ACTOR = "actor"
    ADMIN = "admin"
    BACKEND = "backend"


@dataclass(frozen=True)
class Grant:
    """What one credential lets its holder be. ``pid`` is fixed for an actor and chosen at
    connect time (and checked with :func:`client_pid_allowed`) for an admin."""

    role: Role
    namespace: str
    pid: Pid | None = None
    names: tuple[str, ...] = ()  # global names an actor may register (from its manifest)
    label: str = ""  # for logs: the child's path, or who the admin is
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


def client_pid_allowed(grant: Grant, pid: Pid) -> bool:
    """An admin connects as a client pid of its namespace, never as a supervised child."""
    return (
        grant.role is Role.ADMIN
        and pid.namespace == grant.namespace
        and pid.slot.startswith("client-")
        and pid.incarnation == 1
    )


def _registry(ns: str, pid: Pid, names: tuple[str, ...], any_name: bool) -> list[str]:
    bucket = _subjects.global_bucket(ns)
    tokens = pid.tokens
    allowed = [
        kv(bucket, f"o.{tokens}.>"),  # "this pid owns that key": its own records only
        kv(bucket, f"d.*.*.{tokens}.*"),  # its own entries in duplicate registries (groups)
        # Unique-key registries and their declarations are shared by the namespace's
        # members: documented as cooperative (docs/security.md, "What is not isolated").
        kv(bucket, "u.>"),
        kv(bucket, "m.>"),
        kv(_subjects.local_bucket(ns), ">"),
        kv(_subjects.leases_bucket(ns), tokens),  # its own lease, nobody else's
    ]
    if any_name:
        allowed += [kv(bucket, ">")]  # slot records are denied apart: see permissions()
    else:
        allowed += [kv(bucket, f"n.{escape_token(name)}") for name in names]
    return allowed


def _jetstream_reads(ns: str) -> list[str]:
    """Reading and watching the namespace's buckets: gets, stream info, ephemeral consumers
    (a watch). Never stream creation, purge or deletion, never the durable mailboxes."""
    out = [js_api("INFO")]
    for bucket in (
        _subjects.global_bucket(ns),
        _subjects.local_bucket(ns),
        _subjects.leases_bucket(ns),
    ):
        stream = _subjects.kv_stream(bucket)
        out += [
            js_api("STREAM", "INFO", stream),
            js_api("STREAM", "MSG", "GET", stream),
            js_api("DIRECT", "GET", stream),
            js_api("DIRECT", "GET", stream, ">"),
            js_api("CONSUMER", "CREATE", stream),
            js_api("CONSUMER", "CREATE", stream, ">"),
            js_api("CONSUMER", "DELETE", stream, "*"),
            js_api("CONSUMER", "INFO", stream, "*"),
            _subjects.js_flow_control(stream),
        ]
    return out


def _durable(ns: str, pid: Pid) -> list[str]:
    """Its own slot's durable queue: the one consumer whose name and filter are its own
    (the creation subject carries both), never another slot's queue, never a purge."""
    stream = stream_name(ns)
    consumer = consumer_name(pid)
    return [
        js_api("STREAM", "INFO", stream),
        js_api("CONSUMER", "CREATE", stream, consumer, _subjects.durable_queue_filter(pid)),
        js_api("CONSUMER", "INFO", stream, consumer),
        js_api("CONSUMER", "MSG", "NEXT", stream, consumer),
        _subjects.js_ack(stream, consumer),
        kv(_subjects.global_bucket(ns), f"d.{pid.slot_token}"),  # its handled-up-to mark
        _subjects.durable_parked(pid),
    ]


def permissions(grant: Grant) -> dict[str, Any]:
    """The NATS permissions (user JWT ``pub``/``sub``/``resp``) of ``grant``."""
    ns = grant.namespace
    if grant.role is Role.BACKEND:
        return {"pub": {"allow": [">"]}, "sub": {"allow": [">"]}}
    pid = grant.pid
    if pid is None:
        raise ValueError(f"a {grant.role.value} grant needs a pid")
    subscribe = [
        _subjects.mailbox_subscription(pid),
        _subjects.inboxes(pid),
        _subjects.fence(pid),
        _subjects.stats(pid),
        _subjects.events_all(ns),  # monitors and links watch other pids' exits
    ]
    publish = [
        _subjects.mailbox_as(pid),  # any mailbox, as itself
        _subjects.durable_queue_as(pid),  # any durable mailbox, as itself
        _subjects.stats_all(ns),
        *_registry(ns, pid, grant.names, any_name=grant.role is Role.ADMIN),
        *_jetstream_reads(ns),
    ]
    publish += _durable(ns, pid)
    if grant.role is Role.ADMIN:
        mailboxes = stream_name(ns)
        publish += [
            # The owner may read what durable mailboxes hold (parked messages included),
            # list their consumers, and replay a parked message: publish it again as its
            # original sender (the envelope names it) and delete the parked copy.
            js_api("STREAM", "INFO", mailboxes),
            js_api("STREAM", "MSG", "GET", mailboxes),
            js_api("CONSUMER", "LIST", mailboxes),
            js_api("STREAM", "MSG", "DELETE", mailboxes),
            _subjects.durable_queues(ns),
            _subjects.control_as(pid),  # management requests, as itself
            # A client is nobody's child: it reports its own end to its monitors and links.
            _subjects.events_of(pid),
        ]
    # Slot records say which incarnation is a slot's latest: the backend's alone.
    deny = [kv(_subjects.global_bucket(ns), "s.>")]
    # A call is answered by publishing once to the reply subject it came with.
    return {
        "pub": {"allow": publish, "deny": deny},
        "sub": {"allow": subscribe},
        "resp": {"max": 1, "ttl": 0},
    }
