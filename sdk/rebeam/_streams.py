"""Creating rebeam's buckets, and settings every stream it creates needs that nats-py cannot
pass at creation.

Only a backend may create a namespace's buckets and streams (docs/security.md): anyone
else's attempt is refused by the server, which nats-py reports as a timeout.
:func:`create_bucket` says instead that the namespace is not set up.

Consumers: nats-server 2.15 caps every stream that sets no ``max_consumers`` of its own at 1000
consumers (``jetstream.limits.default_max_consumers``; docs/nats.md, "Stream consumer limit").
Every KV watcher is an ephemeral consumer, and rebeam runs at most one name-cache watcher and
one lease watcher per process (never one per name or per monitor): with one process per actor,
the 1001st actor of a namespace to look up a name would fail. nats-py's ``KeyValueConfig`` has
no ``max_consumers``, so the bucket's stream is updated right after it is created.
"""

from __future__ import annotations

from typing import Any

import nats.errors
from nats.js.kv import KeyValue

from rebeam import _subjects
from rebeam.errors import NotPermitted

__all__ = [
    "MAX_CONSUMERS",
    "create_bucket",
    "lift_consumer_cap",
    "not_set_up",
    "provisioned_bucket",
]

# Processes per namespace, times a watcher or two each: well past the chart's 2,000 pods.
MAX_CONSUMERS = 100_000


async def lift_consumer_cap(js: Any, stream: str) -> None:
    """Give ``stream`` an explicit ``max_consumers`` unless it has one already."""
    info = await js.stream_info(stream)
    config = info.config
    if config.max_consumers is None or config.max_consumers < 0:
        config.max_consumers = MAX_CONSUMERS
        await js.update_stream(config)


async def create_bucket(js: Any, config: Any, namespace: str) -> Any:
    """``js.create_key_value(config)``, or NotPermitted naming the missing backend."""
    try:
        return await js.create_key_value(config)
    except (nats.errors.TimeoutError, TimeoutError):
        raise not_set_up(namespace, config.bucket) from None


def provisioned_bucket(js: Any, bucket: str) -> Any:
    """A handle on ``bucket``, which its namespace's backend created, made without asking the
    server first: ``js.key_value`` reads the stream's info (a round trip) to learn whether
    it allows direct gets. Its gets use the stream's own get, which every stream allows
    and every role that reads may use (auth/grants.py). A bucket that is not there shows
    when it is used: its writes have no responder."""
    return KeyValue(
        name=bucket,
        stream=_subjects.kv_stream(bucket),
        pre=f"$KV.{bucket}.",
        js=js,
        direct=False,
    )


def not_set_up(namespace: str, bucket: str) -> NotPermitted:
    return NotPermitted(
        f"namespace {namespace!r} is not set up here: its bucket {bucket} does not exist, and "
        "only its backend (rebeam run, or the operator) may create it"
    )
