"""Which shards a replica should hold: pure decisions over what its leases showed it.

Several operator replicas share the trees by **namespace**: a namespace's shard is a stable
hash of its name (:func:`shard_of`), and a replica drives the trees of a namespace only while
it holds that shard's Lease (keeper.py does the API calls; docs/operator.md, "Replicas and
shards", gives the design and the timing argument).

Expiry is judged on the observer's own clock, never by comparing a lease's ``renewTime``
with it: a lease counts as expired once the same record (holder and renewal) has been seen
unchanged for its whole ``leaseDurationSeconds`` (:attr:`Seen.since` is when that record
was first seen). Clocks of different machines then never need to agree, only to run at
about the same rate.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["Plan", "Seen", "fair_share", "live_replicas", "plan", "shard_of"]


def shard_of(namespace: str, shards: int) -> int:
    """The shard of a namespace: the same on every replica, whatever Python's hash seed."""
    digest = hashlib.sha256(namespace.encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards


@dataclass(frozen=True)
class Seen:
    """One Lease as a replica last saw it."""

    holder: str  # "" when nobody holds it
    since: float  # this record (holder + renewal) was first seen then (local monotonic clock)
    duration: float  # its leaseDurationSeconds

    def expired(self, now: float) -> bool:
        return not self.holder or now - self.since >= self.duration


@dataclass(frozen=True)
class Plan:
    take: tuple[int, ...] = ()  # free or expired shards to acquire
    renew: tuple[int, ...] = ()  # held shards to keep
    release: tuple[int, ...] = ()  # held shards above the fair share: stop, then hand back


def live_replicas(me: str, seen: Iterable[Seen], now: float) -> set[str]:
    """Every holder of a lease (shard or membership) renewed recently, and ``me``."""
    return {me} | {s.holder for s in seen if not s.expired(now)}


def fair_share(shards: int, replicas: int) -> int:
    return math.ceil(shards / max(1, replicas))


def plan(
    shards: int,
    me: str,
    leases: Mapping[int, Seen],
    members: Iterable[Seen],
    held: Iterable[int],
    now: float,
) -> Plan:
    """What to do with each shard.

    ``leases`` are the shard leases seen (by shard number; a missing one was never created),
    ``members`` the membership leases (each replica keeps one, so that a replica that holds
    nothing yet still counts, and the others make room for it), ``held`` the shards this
    replica holds and may still act on (its own renew deadline not passed).

    A replica keeps at most its fair share, ``ceil(shards / live replicas)``: above it, it
    releases its highest shards; below it, it takes the lowest ones that are free, expired,
    or still in its own name after it stopped acting on them (a renewal that came too late).
    """
    mine = sorted(set(held))
    live = live_replicas(me, [*leases.values(), *members], now)
    share = fair_share(shards, len(live))
    if len(mine) > share:
        return Plan(renew=tuple(mine[:share]), release=tuple(mine[share:]))
    room = share - len(mine)
    free = [
        shard
        for shard in range(shards)
        if shard not in mine
        and (shard not in leases or leases[shard].expired(now) or leases[shard].holder == me)
    ]
    return Plan(take=tuple(free[:room]), renew=tuple(mine))
