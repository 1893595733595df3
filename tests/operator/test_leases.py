"""leases.py: the Lease a keeper writes — who holds it, since when, how often it changed
hands, and the resourceVersion the write is checked against."""

from __future__ import annotations

from rebeam_operator.leases import LABEL_SET, lease_body


def test_a_new_lease_is_acquired_now() -> None:
    body = lease_body("op-shard-3", "op", "r1-abc", 15)
    assert body["metadata"] == {"name": "op-shard-3", "labels": {LABEL_SET: "op"}}
    spec = body["spec"]
    assert spec["holderIdentity"] == "r1-abc"
    assert spec["leaseDurationSeconds"] == 15
    assert spec["leaseTransitions"] == 0
    assert spec["acquireTime"] == spec["renewTime"]
    assert spec["renewTime"].endswith("Z")


def test_a_renewal_keeps_the_acquire_time_and_names_the_version_read() -> None:
    first = lease_body("op-shard-3", "op", "r1-abc", 15)
    first["metadata"]["resourceVersion"] = "41"
    first["spec"]["acquireTime"] = "2026-01-01T00:00:00.000000Z"
    renewed = lease_body("op-shard-3", "op", "r1-abc", 15, first)
    assert renewed["metadata"]["resourceVersion"] == "41"
    assert renewed["spec"]["acquireTime"] == "2026-01-01T00:00:00.000000Z"
    assert renewed["spec"]["leaseTransitions"] == 0


def test_a_handover_counts_a_transition_and_a_release_names_nobody() -> None:
    held = lease_body("op-shard-3", "op", "r1-abc", 15)
    taken = lease_body("op-shard-3", "op", "r2-def", 15, held)
    assert taken["spec"]["leaseTransitions"] == 1
    assert taken["spec"]["acquireTime"] == taken["spec"]["renewTime"]  # acquired now
    released = lease_body("op-shard-3", "op", "", 15, taken)
    assert "holderIdentity" not in released["spec"]
    assert "renewTime" not in released["spec"]
    assert released["spec"]["leaseTransitions"] == 1
