"""Wiring of a sharded replica: its keeper (keeper.py) decides which namespaces the world
acts on; a shard lost stops its drivers, a shard taken lists its trees again."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import socket

from rebeam_operator.keeper import Keeper
from rebeam_operator.kube import Kube
from rebeam_operator.leases import Leases
from rebeam_operator.settings import Settings
from rebeam_operator.shards import shard_of
from rebeam_operator.world import World

__all__ = ["identity", "sharded"]

log = logging.getLogger("rebeam.operator")

RESYNC_RETRY = 2.0  # seconds between attempts to list a taken shard's trees


def identity(settings: Settings) -> str:
    """This replica's holder identity: its name (the pod's) and a random suffix, so that a
    restarted replica never mistakes its previous life's leases for its own."""
    name = settings.replica_name
    if not name:
        host = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().lower()).strip("-")[:40]
        name = host.strip("-") or "operator"
    return f"{name}-{secrets.token_hex(3)}"


def sharded(settings: Settings, kube: Kube, world: World) -> Keeper:
    """The keeper of ``world``'s shards, not started yet: until it takes one, ``world`` acts
    on nothing."""
    assert settings.shard_namespace, "checked by settings.parse"
    count = settings.shards
    resyncs: set[asyncio.Task[None]] = set()

    def lost(shards: set[int]) -> None:
        world.drop(lambda namespace: shard_of(namespace, count) in shards)

    def acquired(shards: set[int]) -> None:
        task = asyncio.create_task(_resync(world, keeper, shards))
        resyncs.add(task)
        task.add_done_callback(resyncs.discard)

    duration = settings.shard_lease_seconds
    keeper = Keeper(
        Leases(kube.api, settings.shard_namespace, timeout=duration / 3),
        shards=count,
        me=identity(settings),
        prefix=settings.shard_lease_prefix,
        duration=duration,
        on_acquired=acquired,
        on_lost=lost,
    )
    world.owns = keeper.owns
    log.info(
        "sharded: %d shard(s), leases %s-* in %s, this replica %s",
        count,
        settings.shard_lease_prefix,
        settings.shard_namespace,
        keeper.me,
    )
    return keeper


async def _resync(world: World, keeper: Keeper, shards: set[int]) -> None:
    def wanted(namespace: str) -> bool:
        return shard_of(namespace, keeper.shards) in shards and keeper.owns(namespace)

    while any(shard in keeper.deadlines for shard in shards):
        try:
            await world.resync(wanted)
            return
        except Exception as exc:  # the shard is held but its trees unknown: try again
            log.warning("cannot list the trees of shard(s) %s: %s", sorted(shards), exc)
            await asyncio.sleep(RESYNC_RETRY)
