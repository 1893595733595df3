"""Each attack of the suite: what an attacker with a stolen actor credential tries, and how
the suite sees that it worked. Every function returns ``(succeeded, evidence)``."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import nats
import nats.js.errors as jserr

from rebeam import _codec, _envelope, _lease, _subjects
from rebeam.backends import slot_key
from rebeam.pids import Pid
from tests.security.harness import World

Attack = Callable[[World], Awaitable[tuple[bool, str]]]


async def _victim(world: World, side: str = "a") -> Pid:
    """The bank's pid as it was before any attack (an attack may move its name)."""
    return world.victims[side]


async def _kv_publish(world: World, subject: str, data: bytes, headers: Any = None) -> None:
    js = world.thief.nc.jetstream()
    # A refused JetStream publish is never acknowledged: the violation says why.
    with contextlib.suppress(nats.errors.TimeoutError, jserr.Error, TimeoutError):
        await js.publish(subject, data, headers=headers, timeout=1)


async def no_credentials(world: World) -> tuple[bool, str]:
    try:
        nc = await nats.connect(world.url, allow_reconnect=False, connect_timeout=5)
    except Exception as exc:
        return False, f"connection refused: {exc}"
    await nc.close()
    return True, "connected without a credential"


async def hijack_name(world: World) -> tuple[bool, str]:
    ns = world.a.namespace
    subject = f"$KV.{_subjects.global_bucket(ns)}.n.bank"
    await _kv_publish(world, subject, _codec.encode({"pid": world.thief.pid, "value": None}))

    async def taken() -> bool:
        return await world.a.owner.whereis("bank", cached=False) == world.thief.pid

    return await world.outcome(subject, taken)


async def delete_lease(world: World) -> tuple[bool, str]:
    victim = await _victim(world)
    subject = f"$KV.{_subjects.leases_bucket(victim.namespace)}.{victim.tokens}"
    await _kv_publish(world, subject, b"", headers={"KV-Operation": "PURGE"})
    leases = await _lease.open_leases(world.a.owner.nc.jetstream(), victim.namespace)

    async def gone() -> bool:
        return not await _lease.lease_alive(leases, victim)

    return await world.outcome(subject, gone)


async def poison_slot(world: World) -> tuple[bool, str]:
    victim = await _victim(world)
    poison = Pid.for_incarnation(victim.namespace, victim.slot, 10**9)
    subject = f"$KV.{_subjects.global_bucket(victim.namespace)}.{slot_key(victim)}"
    await _kv_publish(world, subject, _codec.encode({"pid": poison}))
    kv = await world.a.owner.store.kv()

    async def poisoned() -> bool:
        entry = await kv.get(slot_key(victim))
        return bool(_codec.decode(entry.value).get("pid") == poison)

    return await world.outcome(subject, poisoned)


async def fence_actor(world: World) -> tuple[bool, str]:
    victim = await _victim(world)
    subject = _subjects.fence(victim)
    await world.thief.nc.publish(subject, b"999999")
    await world.thief.nc.flush()

    async def stopped() -> bool:
        return any(
            e["event"] == "exited" and e.get("child") == "vault" and "superseded" in str(e)
            for e in world.a.events.poll()
        )

    return await world.outcome(subject, stopped)


async def _overhear(world: World, subject: str) -> tuple[bool, str]:
    """Subscribe to ``subject`` and see whether the owner's call to the bank shows there."""
    seen: list[Any] = []

    async def spy(msg: Any) -> None:
        seen.append(msg.subject)

    await world.thief.nc.subscribe(subject, cb=spy)
    await world.thief.nc.flush()

    async def overheard() -> bool:
        await world.a.owner.call(world.victims["a"], "balance", timeout=2)
        return bool(seen)

    return await world.outcome(subject, overheard)


async def read_mailbox(world: World) -> tuple[bool, str]:
    return await _overhear(world, _subjects.mailbox_subscription(await _victim(world)))


async def read_replies(world: World) -> tuple[bool, str]:
    return await _overhear(world, f"_INBOX_rebeam.{world.a.namespace}.>")


async def forge_event(world: World) -> tuple[bool, str]:
    from rebeam.events import LifecycleEvent
    from rebeam.exits import KILLED

    victim = await _victim(world)
    subject = _subjects.events_of(victim)
    heard: list[Any] = []

    async def listen(msg: Any) -> None:
        heard.append(msg.data)

    sub = await world.a.owner.nc.subscribe(subject, cb=listen)
    await world.a.owner.nc.flush()
    event = LifecycleEvent.exited(victim, KILLED)
    await world.thief.nc.publish(subject, event.model_dump_json().encode())
    await world.thief.nc.flush()

    async def believed() -> bool:
        return bool(heard)

    try:
        return await world.outcome(subject, believed)
    finally:
        await sub.unsubscribe()


async def management(world: World) -> tuple[bool, str]:
    # Reading the tree is enough to show the API answers; the rest is a verb away.
    subject = _subjects.control(world.a.namespace, "tree", world.thief.pid)
    body = b"{}"

    async def obeyed() -> bool:
        try:
            msg = await world.thief.nc.request(subject, body, timeout=1)
        except Exception:
            return False
        return "ok" in json.loads(msg.data)

    return await world.outcome(subject, obeyed)


async def _call_as(
    world: World, subject: str, sender: Pid, to: Pid, *, reply_as_sender: bool = False
) -> dict[str, Any] | None:
    """A call to ``to`` posing as ``sender``. Its answer comes to the thief's own inbox, or,
    with ``reply_as_sender``, to an inbox of the sender's (a callee answers only inboxes of its
    own namespace: posing across namespaces needs one there too, which only an open server
    lets the thief subscribe to)."""
    data = _envelope.pack_mailbox(_envelope.CALL, "balance")
    nc = world.thief.nc
    try:
        if not reply_as_sender:
            msg = await nc.request(subject, data, timeout=2)
        else:
            inbox = f"{_subjects.inbox_prefix(sender)}.stolen"
            answers = await nc.subscribe(inbox, max_msgs=1)
            await nc.publish(subject, data, reply=inbox)
            msg = await answers.next_msg(timeout=2)
    except Exception:
        return None
    status, payload = _envelope.unpack_reply(msg.data)
    return payload if status == _envelope.OK else None


async def forge_sender(world: World) -> tuple[bool, str]:
    """A call on the subject of another sender: the callee would believe the owner called."""
    victim = await _victim(world)
    impersonated = world.a.owner.pid
    subject = _subjects.mailbox(victim, impersonated)
    answers: list[Any] = []

    async def fooled() -> bool:
        answers.append(await _call_as(world, subject, impersonated, victim))
        return any(a and a.get("from") == str(impersonated) for a in answers)

    return await world.outcome(subject, fooled)


async def purge_durable(world: World) -> tuple[bool, str]:
    from rebeam._durable_stream import stream_name

    subject = f"$JS.API.STREAM.PURGE.{stream_name(world.a.namespace)}"
    result: list[Any] = []

    async def purged() -> bool:
        try:
            msg = await world.thief.nc.request(subject, b"{}", timeout=1)
            result.append(json.loads(msg.data))
        except Exception:
            return False
        return any(r.get("success") for r in result)

    return await world.outcome(subject, purged)


async def other_namespace(world: World) -> tuple[bool, str]:
    """Call the other namespace's bank, posing as a client of that namespace."""
    victim = await _victim(world, "b")
    posing = Pid.for_client(victim.namespace)
    subject = _subjects.mailbox(victim, posing)

    async def reached() -> bool:
        return await _call_as(world, subject, posing, victim, reply_as_sender=True) is not None

    return await world.outcome(subject, reached)


# In the order that lets each one show its effect on an open server: the ones that take the
# bank's name or stop it come last.
ATTACKS: dict[str, Attack] = {
    "connect without a credential": no_credentials,
    "subscribe to another actor's mailbox": read_mailbox,
    "subscribe to others' reply inboxes": read_replies,
    "forge the sender of a call": forge_sender,
    "publish a lifecycle event": forge_event,
    "reach another namespace": other_namespace,
    "hijack another actor's name": hijack_name,
    "delete another actor's lease": delete_lease,
    "purge a durable mailbox": purge_durable,
    "call the management API": management,
    "poison another actor's slot record": poison_slot,
    "fence another actor": fence_actor,
}
