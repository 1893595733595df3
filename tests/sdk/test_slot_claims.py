"""A backend's slot claim (rebeam.backends.claim_slot), as a restart makes it: with the
revision of its own last claim of the slot, it replaces the record without reading it, but
only while nobody else has claimed the slot since; a stale expectation falls back to
reading the record, and a later incarnation found there still refuses the claim."""

from __future__ import annotations

import nats
import pytest

from rebeam._registry import Store
from rebeam.backends import claim_slot, slot_key
from rebeam.errors import Refused
from rebeam.natsd import NatsServer
from rebeam.pids import Pid


async def test_a_restart_claims_on_its_last_revision_unless_someone_claimed_since(
    nats_server: NatsServer, namespace: str
) -> None:
    nc = await nats.connect(nats_server.url, token=nats_server.backend_credentials(namespace))
    try:
        store = Store(nc.jetstream(), namespace)
        first = await claim_slot(nc, Pid.for_incarnation(namespace, "s", 1), store=store)
        second = await claim_slot(
            nc, Pid.for_incarnation(namespace, "s", 2), store=store, last=first
        )
        assert second > first
        kv = await store.kv()
        current, _ = store.record_owner(
            "", (await kv.get(slot_key(Pid.for_incarnation(namespace, "s", 2)))).value
        )
        assert current == Pid.for_incarnation(namespace, "s", 2)

        # Another backend claimed incarnation 5 since: the expectation is stale, the record
        # is read, and incarnation 3 is refused as the stale launch it is.
        await claim_slot(nc, Pid.for_incarnation(namespace, "s", 5))
        with pytest.raises(Refused, match="superseded"):
            await claim_slot(nc, Pid.for_incarnation(namespace, "s", 3), store=store, last=second)
        # A stale expectation with nobody later: read, then claimed.
        sixth = await claim_slot(
            nc, Pid.for_incarnation(namespace, "s", 6), store=store, last=second
        )
        assert sixth > second
    finally:
        await nc.close()
