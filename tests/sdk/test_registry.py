"""Names: global (JetStream KV), local scopes, user registries, release on death, fencing."""

from __future__ import annotations

import pytest

import rebeam
from rebeam.exits import KILLED, ExitKind, shutdown_with

PROBE = "rebeam_test_actors:Probe"


@pytest.fixture
async def node(nats_server, namespace):
    async with rebeam.connect(nats_server.url, namespace=namespace) as node:
        yield node


async def test_register_whereis_unregister(node):
    assert await node.whereis("svc") is None
    await node.register("svc")
    assert await node.whereis("svc", cached=False) == node.pid
    assert await node.whereis("svc") == node.pid  # cached
    with pytest.raises(rebeam.AlreadyRegistered):
        await node.register("svc")
    await node.unregister("svc")
    assert await node.whereis("svc", cached=False) is None
    with pytest.raises(rebeam.NotRegistered):
        await node.unregister("svc")


async def test_names_with_any_characters(node):
    await node.register("orders/eu.west: 1 ✓")
    assert await node.whereis("orders/eu.west: 1 ✓", cached=False) == node.pid


async def test_name_taken_by_another_process(launcher, node):
    child = await launcher.start(PROBE, name="writer")
    with pytest.raises(rebeam.AlreadyRegistered) as info:
        await node.register("writer")
    assert info.value.owner == child.pid
    assert await node.call("writer", ["echo", 1]) == 1
    # A second process started with the same name fails to start, with a clear reason.
    other = await launcher.start(PROBE, name="writer", expect_ready=False)
    reason = await other.wait()
    assert reason.details is not None
    assert reason.details.exception_type == "AlreadyRegistered"


async def test_name_released_after_kill_and_reclaimed(launcher, node):
    first = await launcher.start(PROBE, slot="writer-slot", name="writer")
    assert await node.whereis("writer") == first.pid  # warm the cache on purpose
    first.kill()
    assert await first.wait() == KILLED
    assert await node.whereis("writer", cached=False) is None
    second = await launcher.start(PROBE, slot="writer-slot", incarnation=2, name="writer")
    # The cached entry may still point at the dead pid: the call retries uncached.
    assert await node.call("writer", "pid") == second.pid


async def test_restarted_incarnation_takes_its_name_back_at_once(launcher, node):
    # The observer has not released the name (e.g. a node was lost): incarnation 2 of the
    # same slot may take it over, nobody else may.
    await node.store.claim("n.cache", rebeam.Pid.for_incarnation(node.namespace, "cache-slot", 1))
    child = await launcher.start(PROBE, slot="cache-slot", incarnation=2, name="cache")
    assert await node.whereis("cache", cached=False) == child.pid


async def test_clean_exit_releases_names(launcher, node):
    child = await launcher.start(PROBE, {"register": ["a", "b"]}, names=("a", "b"))
    assert await node.whereis("a", cached=False) == child.pid
    await node.call(child.pid, "stop")
    await child.wait()
    assert await node.whereis("a", cached=False) is None
    assert await node.whereis("b", cached=False) is None


async def test_local_scope(nats_server, namespace):
    async with (
        rebeam.connect(nats_server.url, namespace=namespace, local_scope="run-1") as a,
        rebeam.connect(nats_server.url, namespace=namespace, local_scope="run-2") as b,
    ):
        await a.register("worker", local=True)
        await b.register("worker", local=True)  # another scope: no clash
        assert await a.whereis("worker", local=True) == a.pid
        assert await b.whereis("worker", local=True) == b.pid
        assert await a.whereis("worker") is None  # not a global name
        assert await b.resolve(rebeam.Name("worker", "run-1")) == a.pid
        with pytest.raises(rebeam.AlreadyRegistered):
            await b.register("worker", scope="run-1")


async def test_fencing_a_superseded_incarnation(launcher, node):
    old = await launcher.start(PROBE, slot="fenced", name="svc")
    assert await node.call("svc", "pid") == old.pid
    # Incarnation 2 of the same slot starts while 1 is still alive (a zombie pod, a
    # partition): 1 stops taking messages at once and ends.
    new = await launcher.start(PROBE, slot="fenced", incarnation=2, name="svc")
    assert await old.wait() == shutdown_with("superseded")
    assert await node.call("svc", "pid") == new.pid
    with pytest.raises(rebeam.NoProc):
        await node.call(old.pid, "pid")
    # A second process launched as the same pid is refused while the first runs: by the
    # issuer (the pid speaks for another identity), or else by the first one's lease.
    # Refused launches try to connect for their whole connect deadline (10 s by default: a
    # refusal can be an issuer that is not up yet); these two are refused for good.
    refused_soon = {"REBEAM_CONNECT_DEADLINE": "4"}
    twin = await launcher.start(
        PROBE, slot="fenced", incarnation=2, expect_ready=False, env=refused_soon
    )
    reason = await twin.wait()
    assert reason.details is not None
    message = reason.details.message or ""
    assert "another process is running as" in message or "refused" in message, message
    assert await node.call("svc", "pid") == new.pid  # the twin's end released nothing
    # A stale launch of incarnation 1 is refused before it takes any message: by its slot
    # record, or already at NATS's door (the pid still speaks for its first identity).
    stale = await launcher.start(
        PROBE, slot="fenced", incarnation=1, expect_ready=False, env=refused_soon
    )
    reason = await stale.wait()
    assert reason.kind is ExitKind.CRASH
    assert reason.details is not None
    message = reason.details.message or ""
    assert "superseded" in message or "its pid is in use" in message, message


async def test_message_on_a_subject_of_no_sender_is_refused(launcher, node):
    from rebeam import _subjects
    from rebeam._envelope import CALL, pack_mailbox

    child = await launcher.start(PROBE)
    # A light actor's subject (its last token not "_"): no process hosts one, so it names
    # no sender to deliver from. Only a backend may publish it: the launcher's connection.
    subject = _subjects.mailbox(child.pid, node.pid)[: -len(_subjects.WHOLE)] + "light"
    data = pack_mailbox(CALL, b"\xc0")
    reply = await launcher.nc.request(subject, data, timeout=5)
    from rebeam._envelope import unpack_reply

    status, payload = unpack_reply(reply.data)
    assert status == 1
    assert payload["error"] == "refused"
    assert (await node.call(child.pid, "stats"))["misaddressed"] == 1


async def test_unique_user_registry_and_via(launcher, node):
    sessions = await rebeam.Registry.open("sessions", keys="unique", node=node)
    await sessions.register("alice", {"since": 1})
    assert await sessions.lookup("alice") == [(node.pid, {"since": 1})]
    with pytest.raises(rebeam.AlreadyRegistered):
        await sessions.register("alice")
    with pytest.raises(rebeam.RegistryMismatch):
        await rebeam.Registry.open("sessions", keys="duplicate", node=node)
    child = await launcher.start(PROBE)
    # Address a process by (registry, key).
    await node.store.reg_register("sessions", "unique", "bob", child.pid, None)
    assert await node.call(rebeam.Via("sessions", "bob"), ["echo", "hi"]) == "hi"
    await sessions.unregister("alice")
    assert await sessions.lookup("alice") == []


async def test_duplicate_registry_pubsub(nats_server, namespace):
    async with (
        rebeam.connect(nats_server.url, namespace=namespace) as a,
        rebeam.connect(nats_server.url, namespace=namespace) as b,
    ):
        topics_a = await rebeam.Registry.open("topics", keys="duplicate", node=a)
        topics_b = await rebeam.Registry.open("topics", keys="duplicate", node=b)
        await topics_a.register("prices", 1)
        await topics_a.register("prices", 2)  # the same process may register a key twice
        await topics_b.register("prices", 3)
        entries = await topics_a.lookup("prices")
        assert sorted(v for _, v in entries) == [1, 2, 3]
        assert await topics_a.keys_of() == ["prices", "prices"]
        assert await topics_b.dispatch("prices", {"p": 9}) == 3
        assert await a.receive(timeout=5) == {"p": 9}
        assert await a.receive(timeout=5) == {"p": 9}
        assert await b.receive(timeout=5) == {"p": 9}
        await topics_a.unregister("prices")
        assert [v for _, v in await topics_b.lookup("prices")] == [3]


async def test_release_names_of_uses_no_consumer(node):
    """An observer releases the names of many dead incarnations: each release reads the
    pid's index without a consumer (a stream allows at most 1000), releases exactly what
    that pid holds, and leaves what a later incarnation took over."""
    from rebeam._registry import _owned_keys, local_key, name_key
    from rebeam._subjects import global_bucket, local_bucket
    from rebeam.events import release_names_of

    store = node.store
    pids = [rebeam.Pid.for_incarnation(node.namespace, f"slot{i}", 1) for i in range(1200)]
    for i, pid in enumerate(pids[:5]):
        await store.claim(name_key(f"svc{i}"), pid)
        await store.claim(name_key(f"alt{i}"), pid)
        await store.claim(local_key("run", f"w{i}"), pid, local=True)
        await store.reg_register("topics", "duplicate", "prices", pid, i)
    await store.release(name_key("alt0"), pids[0])  # an index entry deleted before
    successor = rebeam.Pid.for_incarnation(node.namespace, "slot1", 2)
    await store.claim(name_key("svc1"), successor)  # incarnation 2 took svc1 over

    jsm = node.nc.jsm()
    # Every consumer create is a request on $JS.API.CONSUMER.CREATE...: see them all.
    creates = await node.nc.subscribe("$JS.API.CONSUMER.>")
    await node.nc.flush()
    for pid in pids:  # well past the 1000-consumer limit of a stream
        await release_names_of(node.nc, pid)
    await node.nc.flush()
    assert creates.pending_msgs == 0
    await creates.unsubscribe()

    assert await store.owner(name_key("svc1")) == (successor, None)
    for i in range(5):
        assert await store.owner(name_key(f"alt{i}")) == (None, None)
        assert await store.owner(local_key("run", f"w{i}"), local=True) == (None, None)
        if i != 1:
            assert await store.owner(name_key(f"svc{i}")) == (None, None)
    assert await store.scan("d.>") == []
    for pid in pids[:5]:
        for bucket in (global_bucket(node.namespace), local_bucket(node.namespace)):
            assert await _owned_keys(jsm, bucket, pid) == []
    assert await release_names_of(node.nc, pids[0]) == 0  # twice is safe


async def test_a_name_the_manifest_does_not_declare_is_refused_at_once(launcher, node):
    child = await launcher.start(PROBE, {"register": ["declared"]}, names=("declared",))
    assert await node.whereis("declared", cached=False) == child.pid
    refused = await launcher.start(PROBE, {"register": ["bank"]}, expect_ready=False)
    reason = await refused.wait()
    assert reason.details is not None
    assert reason.details.exception_type == "NotPermitted"
    assert "may not register 'bank'" in (reason.details.message or "")
    assert await node.whereis("bank", cached=False) is None
