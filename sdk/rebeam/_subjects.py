"""Every NATS subject and KV bucket name rebeam uses, built in one place.

::

    rebeam.<ns>.pid.<slot>.<incarnation>           a mailbox (one per incarnation)
    rebeam.<ns>.stats.<slot>.<incarnation>         a node's counters (answered beside the mailbox)
    rebeam.<ns>.fence.<slot>                       "incarnation N started": older ones stop
    rebeam.<ns>.events.<event>.<slot>.<incarnation> lifecycle events (started, exited, ...)
    _INBOX_rebeam.<ns>.<pid tokens>.<token>        call replies to one node
    KV bucket rebeam_<ns>                          the global registry (names, keys, groups)
    KV bucket rebeam_<ns>_local                    the local scopes (memory storage)

A reply goes only to an inbox: whoever sends a request chooses its reply subject, and a
process that answered any subject would publish for them wherever it may publish (a
``$JS.API`` request, another mailbox). :func:`is_reply_inbox` recognises the inboxes of
rebeam calls, :func:`is_inbox` any NATS request inbox (nats-py's ``_INBOX.`` too).
"""

from __future__ import annotations

from rebeam.pids import Pid

__all__ = [
    "events",
    "events_of",
    "fence",
    "global_bucket",
    "inbox_prefix",
    "is_inbox",
    "is_reply_inbox",
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


_REPLY_ROOT = "_INBOX_rebeam"
_NATS_INBOX = "_INBOX."  # nats-py's (and every NATS client's) default request inbox


def _reply_root(namespace: str) -> str:
    return f"{_REPLY_ROOT}.{namespace}."


def inbox_prefix(pid: Pid) -> str:
    return f"{_reply_root(pid.namespace)}{pid.tokens}"


def is_reply_inbox(subject: str, namespace: str) -> bool:
    """Whether ``subject`` is a rebeam call inbox of ``namespace``: ``_INBOX_rebeam.<ns>.``
    followed by literal tokens (no wildcard, none empty)."""
    root = _reply_root(namespace)
    return subject.startswith(root) and _literal(subject[len(root) :])


def is_inbox(subject: str) -> bool:
    """Whether ``subject`` is a request inbox: a rebeam call inbox of any namespace, or a
    NATS client's ``_INBOX.``; never a ``$``-subject, a mailbox or anything else."""
    for root in (_NATS_INBOX, f"{_REPLY_ROOT}."):
        if subject.startswith(root):
            return _literal(subject[len(root) :])
    return False


def _literal(tokens: str) -> bool:
    return bool(tokens) and all(t and t != "*" and t != ">" for t in tokens.split("."))


def global_bucket(namespace: str) -> str:
    return f"rebeam_{namespace}"


def local_bucket(namespace: str) -> str:
    return f"rebeam_{namespace}_local"
