"""The counters a node keeps; its parts (requests, exit watches, interest) count into them."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Stats"]


@dataclass
class Stats:
    """Counters a node keeps, for logs, status, ``rebeam.stats`` and tests."""

    received: int = 0  # user messages (send, cast, call) admitted from the mailbox
    malformed: int = 0
    oversized: int = 0
    misaddressed: int = 0
    late_replies: int = 0
    slow_consumer_drops: int = 0  # dropped by nats-py on a subscription other than the mailbox
    mailbox_refused: int = 0  # refused because the mailbox was full (answered when possible)
    refused_silently: int = 0  # ... of which plain casts and sends: no sender to answer
    durable_delivered: int = 0  # durable mailbox: handled and acknowledged
    durable_duplicates: int = 0  # durable mailbox: redeliveries of handled messages, skipped
    parked: int = 0  # durable mailbox: poison messages moved aside
    durable_redelivered: int = 0  # durable mailbox: deliveries after the first of a message
    reconnects: int = 0  # to NATS, after the connection was lost
    # Requests sent again after a cluster answered "no responders" for a pid holding a live
    # lease: its subscription had not reached our server yet (rebeam._interest).
    interest_retries: int = 0
    # Messages whose envelope named another sender than the subject they came on.
    forged: int = 0
    # Operations the server refused: this process's credential does not allow them.
    not_permitted: int = 0
    # Refused input (docs/sdk.md, "Input limits"); each is also logged, at a bounded rate.
    reply_refused: int = 0  # requests whose reply subject is not an inbox: not answered
    malformed_replies: int = 0  # call replies that did not decode (the caller got CodecError)
    malformed_events: int = 0  # exit events that did not decode: ignored
    registry_invalid: int = 0  # registry records that did not decode: taken as absent
    links_refused: int = 0  # link signals past max_links (or from another namespace)
    links_dropped: int = 0  # links from pids that did not answer a ping
    trace_dropped: int = 0  # malformed trace contexts a tracing receiver dropped (rebeam.tracing)
