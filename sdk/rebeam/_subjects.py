"""Every NATS subject and KV bucket name rebeam uses, built in one place.

::

    rebeam.<ns>.pid.<to>._.<from>._                 a message to a mailbox from a sender
    rebeam.<ns>.stats.<slot>.<incarnation>           a node's counters (answered beside the mailbox)
    rebeam.<ns>.fence.<slot>                         "incarnation N started": older ones stop;
                                                     "kill N": incarnation N dies at once
    rebeam.<ns>.events.<event>.<slot>.<incarnation>  lifecycle events (started, exited, ...)
    rebeam.<ns>.control.<operation>.<from>           the management API of the tree's backend
    rebeam.<ns>.dmbox.q.<slot>.<from>._              a durable send or cast, kept for <slot>
    rebeam.<ns>.dmbox.parked.<slot>                  durable messages its owner could not handle
    _INBOX_rebeam.<ns>.<slot>.<incarnation>.<nonce>  reply inboxes of one node
    KV bucket rebeam_<ns>                            the global registry (names, keys, groups)
    KV bucket rebeam_<ns>_local                      the local scopes (memory storage)
    KV bucket rebeam_<ns>_leases                     liveness leases
    $KV.<bucket>.<key>                               a key of a bucket (JetStream's form)
    $JS.API.<...>, $JS.ACK.<...>, $JS.FC.<...>       JetStream's API, acks and flow control
    $SYS.REQ.USER.AUTH                               the server's auth callout (the issuer)
    $SYS.REQ.SERVER.<server id>.KICK                 disconnect a connection of a server

No other module writes a subject out by hand: the patterns a credential is granted
(``rebeam.auth.grants``) are built here too, next to the subjects they must match.

``<to>`` and ``<from>`` are pids as two tokens, ``<slot>.<incarnation>``. The **sender is part
of the subject** (of a management request too: who asks) because that is what the server can
enforce: each connection may publish
only on subjects that carry its own pid (docs/security.md, "Who may say what"), so a
receiver reads the sender from the subject, never from the payload alone. The ``_`` after
each pid stands for "the process itself": the token is kept for light actors, many of which
one process will host and speak for, so that their pids extend the process's by one token
without changing the subject's shape.

A reply goes only to an inbox: whoever sends a request chooses its reply subject, and a
process that answered any subject would publish for them wherever it may publish (a
``$JS.API`` request, another mailbox). :func:`is_reply_inbox` recognises the inboxes of
rebeam calls, :func:`is_inbox` any NATS request inbox (nats-py's ``_INBOX.`` too).
"""

from __future__ import annotations

from collections.abc import Callable

from rebeam.pids import Pid

__all__ = [
    "AUTH_CALLOUT",
    "KILL_ORDER",
    "WHOLE",
    "control",
    "control_as",
    "control_request",
    "control_subscription",
    "durable_all",
    "durable_parked",
    "durable_queue",
    "durable_queue_as",
    "durable_queue_filter",
    "durable_queues",
    "events",
    "events_all",
    "events_of",
    "fence",
    "global_bucket",
    "inbox_prefix",
    "inboxes",
    "is_inbox",
    "is_reply_inbox",
    "js_ack",
    "js_api",
    "js_flow_control",
    "kick",
    "kv",
    "kv_stream",
    "leases_bucket",
    "local_bucket",
    "mailbox",
    "mailbox_as",
    "mailbox_subscription",
    "sender_text",
    "stats",
    "stats_all",
]

WHOLE = "_"  # the light-actor token of a message to or from a whole process
ANY_PID = "*.*"  # any pid's two tokens, in a subscription or a granted pattern


def _subject(namespace: str, *tokens: str) -> str:
    return ".".join(("rebeam", namespace, *tokens))


def mailbox(to: Pid, sender: Pid) -> str:
    return _subject(to.namespace, "pid", to.tokens, WHOLE, sender.tokens, WHOLE)


def mailbox_subscription(pid: Pid) -> str:
    """What a node subscribes: its mailbox, from any sender."""
    return _subject(pid.namespace, "pid", pid.tokens, WHOLE, ANY_PID, "*")


def mailbox_as(sender: Pid) -> str:
    """Every mailbox of the namespace, written to by ``sender`` (what it may publish)."""
    return _subject(sender.namespace, "pid", ANY_PID, WHOLE, sender.tokens, WHOLE)


def sender_text(subject: str) -> str | None:
    """The sender's pid string (``<ns>.<slot>.<incarnation>``) of a mailbox or durable-queue
    subject, or None when the subject is not of that form. The receiving hot path compares
    it with the envelope's sender; no Pid is built."""
    parts = subject.split(".")
    if len(parts) == 9 and parts[2] == "pid" and parts[8] == WHOLE:
        return f"{parts[1]}.{parts[6]}.{parts[7]}"
    if len(parts) == 8 and parts[2] == "dmbox" and parts[3] == "q" and parts[7] == WHOLE:
        return f"{parts[1]}.{parts[5]}.{parts[6]}"
    return None


def durable_queue(to: Pid, sender: Pid) -> str:
    """A durable send or cast for ``to``'s slot (any later incarnation takes it)."""
    return _subject(to.namespace, "dmbox", "q", to.slot_token, sender.tokens, WHOLE)


def durable_queue_filter(pid: Pid) -> str:
    """Everything kept for ``pid``'s slot, from any sender."""
    return _subject(pid.namespace, "dmbox", "q", pid.slot_token, ">")


def durable_queue_as(sender: Pid) -> str:
    """Every durable queue of the namespace, written to by ``sender``."""
    return _subject(sender.namespace, "dmbox", "q", "*", sender.tokens, WHOLE)


def durable_queues(namespace: str) -> str:
    """Every durable queue of the namespace, written to by anyone (the owner replays)."""
    return _subject(namespace, "dmbox", "q", ">")


def durable_parked(pid: Pid) -> str:
    """Where the messages ``pid``'s slot could not handle are kept."""
    return _subject(pid.namespace, "dmbox", "parked", pid.slot_token)


def durable_all(namespace: str) -> str:
    """The subjects of the namespace's durable-mailbox stream: queues and parked messages."""
    return _subject(namespace, "dmbox", ">")


def stats(pid: Pid) -> str:
    return _subject(pid.namespace, "stats", pid.tokens)


def stats_all(namespace: str) -> str:
    """Every node's counters (a node may ask any other for them)."""
    return _subject(namespace, "stats", ANY_PID)


def fence(pid: Pid) -> str:
    return _subject(pid.namespace, "fence", pid.slot_token)


KILL_ORDER = b"kill "
"""On a fence subject, followed by an incarnation: a backend's brutal_kill of it."""


def events(namespace: str, event: str, pid: Pid | None) -> str:
    return _subject(namespace, "events", event, pid.tokens if pid is not None else "_._")


def events_of(pid: Pid, event: str = "exited") -> str:
    return events(pid.namespace, event, pid)


def events_all(namespace: str) -> str:
    """Every lifecycle event of the namespace."""
    return _subject(namespace, "events", ">")


def control(namespace: str, operation: str, requester: Pid) -> str:
    """A management request of ``requester`` (a client pid of ``namespace``)."""
    return _subject(namespace, "control", operation, requester.tokens)


def control_subscription(namespace: str) -> str:
    """Every management request of ``namespace`` (``*``: of every namespace)."""
    return _subject(namespace, "control", "*", ANY_PID)


def control_as(requester: Pid) -> str:
    """Every management request ``requester`` may make, as itself."""
    return _subject(requester.namespace, "control", "*", requester.tokens)


def control_request(subject: str) -> tuple[str, Pid] | None:
    """The operation and the requester of a management request's subject, or None when the
    subject is not of that form."""
    parts = subject.split(".")
    if len(parts) != 6 or parts[0] != "rebeam" or parts[2] != "control":
        return None
    try:
        return parts[3], Pid.parse(f"{parts[1]}.{parts[4]}.{parts[5]}")
    except ValueError:
        return None


_REPLY_ROOT = "_INBOX_rebeam"
_NATS_INBOX = "_INBOX."  # nats-py's (and every NATS client's) default request inbox


def _reply_root(namespace: str) -> str:
    return f"{_REPLY_ROOT}.{namespace}."


def inbox_prefix(pid: Pid) -> str:
    """The prefix of every reply inbox of ``pid``'s node (a random token follows it)."""
    return f"{_reply_root(pid.namespace)}{pid.tokens}"


def inboxes(pid: Pid) -> str:
    """Every reply inbox of ``pid``'s node."""
    return f"{inbox_prefix(pid)}.>"


def is_reply_inbox(subject: str, namespace: str) -> bool:
    """Whether ``subject`` is a rebeam call inbox of ``namespace``: ``_INBOX_rebeam.<ns>.``
    followed by literal tokens (no wildcard, none empty)."""
    root = f"{_REPLY_ROOT}.{namespace}."  # _reply_root's, written out: every call received
    return subject.startswith(root) and _literal(subject[len(root) :])


def is_inbox(subject: str) -> bool:
    """Whether ``subject`` is a request inbox: a rebeam call inbox of any namespace, or a
    NATS client's ``_INBOX.``; never a ``$``-subject, a mailbox or anything else."""
    for root in (_NATS_INBOX, f"{_REPLY_ROOT}."):
        if subject.startswith(root):
            return _literal(subject[len(root) :])
    return False


def _literal(tokens: str) -> bool:
    # Whole tokens looked up in the list (in C), not tested one by one: every call an actor
    # receives is checked here. An empty ``tokens`` splits to [""]: refused too.
    parts = tokens.split(".")
    return "" not in parts and "*" not in parts and ">" not in parts


def _bucket(suffix: str) -> Callable[[str], str]:
    def name(namespace: str) -> str:
        return f"rebeam_{namespace}{suffix}"

    return name


global_bucket = _bucket("")  # the global registry: names, unique keys, groups
local_bucket = _bucket("_local")  # the local scopes (memory storage)
leases_bucket = _bucket("_leases")  # liveness leases


def kv(bucket: str, key: str) -> str:
    """The subject of ``key`` in KV ``bucket`` (a pattern where ``key`` has wildcards)."""
    return f"$KV.{bucket}.{key}"


def kv_stream(bucket: str) -> str:
    """The JetStream stream that holds KV ``bucket``."""
    return f"KV_{bucket}"


def js_api(*tokens: str) -> str:
    """A JetStream API request subject: ``js_api("STREAM", "INFO", stream)``."""
    return ".".join(("$JS.API", *tokens))


def js_ack(stream: str, consumer: str) -> str:
    """Acknowledgements of ``consumer``'s messages of ``stream``."""
    return f"$JS.ACK.{stream}.{consumer}.>"


def js_flow_control(stream: str) -> str:
    """Flow-control replies of the consumers of ``stream`` (a watch uses them)."""
    return f"$JS.FC.{stream}.>"


AUTH_CALLOUT = "$SYS.REQ.USER.AUTH"  # where the server asks the issuer about a connection


def kick(server_id: str) -> str:
    """The system request that disconnects one of ``server_id``'s connections."""
    return f"$SYS.REQ.SERVER.{server_id}.KICK"
