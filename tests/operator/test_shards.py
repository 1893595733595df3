"""shards.py: which shards a replica takes, renews and releases, given the leases it saw and
its own clock; and the namespace -> shard mapping every replica must agree on."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rebeam_operator.shards import Plan, Seen, fair_share, live_replicas, plan, shard_of

D = 15.0  # every lease's duration here


def held_by(holder: str, since: float = 100.0) -> Seen:
    return Seen(holder, since, D)


FREE = Seen("", 0.0, D)


def test_shard_of_is_stable_across_processes() -> None:
    """Every replica maps a namespace alike, whatever its hash seed."""
    here = [shard_of(f"ns-{i}", 16) for i in range(50)]
    code = (
        "from rebeam_operator.shards import shard_of\n"
        "print([shard_of(f'ns-{i}', 16) for i in range(50)])"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123"},
    )
    assert other.stdout.strip() == str(here)
    assert len(set(here)) > 8  # spread over the shards, not all in one


def test_expiry_is_judged_by_when_the_record_was_first_seen() -> None:
    seen = held_by("a", since=100.0)
    assert not seen.expired(100.0 + D - 0.01)
    assert seen.expired(100.0 + D)
    assert FREE.expired(0.0)  # nobody holds it


def test_alone_a_replica_takes_every_free_shard() -> None:
    assert plan(4, "me", {}, [], [], now=0.0) == Plan(take=(0, 1, 2, 3))
    assert plan(4, "me", {0: FREE, 1: FREE}, [], [], now=0.0) == Plan(take=(0, 1, 2, 3))


def test_a_live_holders_shard_is_never_taken() -> None:
    leases = {0: held_by("b", since=100.0)}
    result = plan(2, "me", leases, [], [], now=100.0 + D - 1)
    assert result.take == (1,)  # fair share is 1 of 2 with b alive
    # once its record has been seen unchanged for the whole duration, it is free to take
    later = plan(2, "me", leases, [], [1], now=100.0 + D)
    assert later == Plan(take=(0,), renew=(1,))


def test_a_joining_replica_counts_through_its_membership_lease() -> None:
    """b holds all 4; me holds nothing but its membership is seen: b gives back half."""
    leases = {i: held_by("b") for i in range(4)}
    members = [held_by("me"), held_by("b")]
    as_b = plan(4, "b", leases, members, held=[0, 1, 2, 3], now=101.0)
    assert as_b == Plan(renew=(0, 1), release=(2, 3))
    # me, meanwhile, takes nothing that b still holds
    assert plan(4, "me", leases, members, [], now=101.0) == Plan()
    # and once b wrote them free, me takes them
    freed = {**leases, 2: FREE, 3: FREE}
    assert plan(4, "me", freed, members, [], now=102.0) == Plan(take=(2, 3))


def test_a_dead_replicas_shards_are_taken_after_the_duration() -> None:
    leases = {0: held_by("me"), 1: held_by("me"), 2: held_by("dead"), 3: held_by("dead")}
    members = [held_by("me"), held_by("dead")]
    assert plan(4, "me", leases, members, [0, 1], now=110.0) == Plan(renew=(0, 1))
    # dead stopped renewing at 100: at 115 it no longer counts as live, and its shards are free
    assert plan(4, "me", leases, members, [0, 1], now=115.0) == Plan(take=(2, 3), renew=(0, 1))


def test_a_shard_still_in_my_name_after_my_deadline_is_taken_back() -> None:
    """I stopped acting on shard 1 (renewed too late) but nobody took it: take it again (the
    write against the resourceVersion read fails if someone did)."""
    leases = {0: held_by("me"), 1: held_by("me")}
    assert plan(2, "me", leases, [], held=[0], now=101.0) == Plan(take=(1,), renew=(0,))


def test_uneven_shares_settle_without_moving_back_and_forth() -> None:
    """16 shards, 3 replicas: a share of 6; 6 + 6 + 4 is stable, nobody releases."""
    leases = {i: held_by("a" if i < 6 else "b" if i < 12 else "c") for i in range(16)}
    members = [held_by(x) for x in "abc"]
    assert plan(16, "a", leases, members, range(6), 101.0) == Plan(renew=tuple(range(6)))
    assert plan(16, "c", leases, members, range(12, 16), 101.0) == Plan(renew=(12, 13, 14, 15))


@pytest.mark.parametrize(("shards", "replicas", "share"), [(16, 1, 16), (16, 3, 6), (4, 8, 1)])
def test_fair_share(shards: int, replicas: int, share: int) -> None:
    assert fair_share(shards, replicas) == share


def test_live_replicas_are_recent_holders_and_me() -> None:
    seen = [held_by("a", since=100.0), held_by("old", since=80.0), FREE]
    assert live_replicas("me", seen, now=100.0) == {"me", "a"}
