"""More than 1000 processes in one namespace: each runs one name-cache watcher and one
lease watcher (ephemeral consumers), and nats-server 2.15 caps a stream that sets no
``max_consumers`` at 1000 consumers. The buckets rebeam creates set their own."""

from __future__ import annotations

import contextlib

import rebeam
from rebeam._streams import MAX_CONSUMERS
from rebeam._subjects import global_bucket, leases_bucket, local_bucket

WATCHERS = 1001  # the default cap, plus one


async def test_buckets_take_more_than_a_thousand_watchers(nats_server, namespace):
    async with rebeam.connect(nats_server.url, namespace=namespace) as node:
        await node.register("someone")  # creates the registry bucket; the lease bucket exists
        await node.store.kv(local=True)
        js = node.nc.jetstream()
        for name in (global_bucket(namespace), local_bucket(namespace), leases_bucket(namespace)):
            info = await js.stream_info(f"KV_{name}")
            assert info.config.max_consumers == MAX_CONSUMERS, name
        # What 1001 processes' name caches amount to, on the real server.
        kv = await node.store.kv()
        watchers = []
        try:
            for _ in range(WATCHERS):
                watchers.append(await kv.watch("n.>"))
        finally:
            for watcher in watchers:
                with contextlib.suppress(Exception):
                    await watcher.stop()
        assert len(watchers) == WATCHERS
