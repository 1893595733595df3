"""Coalesced durable sends (docs/sdk.md, "Durable mailboxes"): sends from one sender to one
slot made while earlier ones await their PubAck are stored as one batch message, and every
guarantee still holds per send: order per sender, no second run of a recorded send after
kill -9 in the middle of a batch, parking of the one send of a batch that crashes, and the
mailbox's bound.

Real actor processes and a real nats-server; waits are on reports, with deadlines.
"""

from __future__ import annotations

import asyncio
import collections
import os
import time

import pytest
from nats.js.errors import KeyNotFoundError
from tests.sdk.test_durable import DURABLE, collect, settled

import rebeam
from rebeam import _durable_batch, _durable_stream, _subjects
from rebeam._durable import WHOLE, Position, Progress
from rebeam._envelope import CAST, pack_fields, unpack
from rebeam._registry import Store
from rebeam.errors import CodecError
from rebeam.pids import Pid


@pytest.fixture
async def node(nats_server, namespace):
    async with rebeam.connect(nats_server.url, namespace=namespace) as node:
        yield node


async def burst(sender: rebeam.Node, to: Pid, messages: list[object]) -> list[int]:
    """All of ``messages`` sent durably at once; the stream sequence each was stored in."""
    return list(
        await asyncio.gather(*(_durable_batch.publish(sender, to, CAST, m) for m in messages))
    )


def positions(seqs: list[int]) -> list[Position]:
    """Each send's position, from the stored message each went into (sends in one message
    are its items, in the order sent; the last is WHOLE)."""
    size = collections.Counter(seqs)
    seen: collections.Counter[int] = collections.Counter()
    out = []
    for seq in seqs:
        seen[seq] += 1
        out.append((seq, WHOLE if seen[seq] == size[seq] else seen[seq] - 1))
    return out


async def test_a_burst_is_coalesced_and_each_sender_keeps_its_order(launcher, node, nats_server):
    args = {"report_to": str(node.pid)}
    first = await launcher.start(DURABLE, args, slot="co-o")
    await first.stop()
    async with rebeam.connect(nats_server.url, namespace=launcher.namespace) as other:
        a, b = await asyncio.gather(
            burst(node, first.pid, [["a", i] for i in range(300)]),
            burst(other, first.pid, [["b", i] for i in range(300)]),
        )
        # Fewer stored messages than sends, and stored in the order sent.
        assert len(set(a)) < 60
        assert len(set(b)) < 60
        assert a == sorted(a)
        assert b == sorted(b)
        second = await launcher.start(DURABLE, args, slot="co-o", incarnation=2)
        # And while it runs: a burst straight to the running incarnation.
        c = await burst(other, second.pid, [["c", i] for i in range(300)])
        assert c == sorted(c)
        got = [m["got"] for m in await collect(node, 900, timeout=60)]
    for tag in "abc":
        assert [i for t, i in got if t == tag] == list(range(300)), tag
    stats = await settled(second.pid, "durable_delivered", 900)
    assert stats["durable_duplicates"] == 0
    assert stats["parked"] == 0
    await second.stop()


async def test_sends_keep_the_order_of_the_calls_not_of_the_awaits(launcher, node):
    args = {"report_to": str(node.pid)}
    first = await launcher.start(DURABLE, args, slot="co-c")
    await first.stop()
    pending = [node.cast(first.pid, ["a", i], durable=True) for i in range(100)]
    for send in reversed(pending):  # awaited last to first
        await send
    second = await launcher.start(DURABLE, args, slot="co-c", incarnation=2)
    got = [m["got"] for m in await collect(node, 100)]
    assert got == [["a", i] for i in range(100)]
    await second.stop()


async def test_a_send_that_stops_waiting_leaves_its_batch_mates_stored(launcher, node):
    """A caller's timeout ends its own wait for the store, not its batch-mates': each of
    them is told it was stored, and is."""
    args = {"report_to": str(node.pid)}
    first = await launcher.start(DURABLE, args, slot="co-w")
    await first.stop()
    sends = [node.cast(first.pid, ["a", i], durable=True) for i in range(3)]  # one batch
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(sends[1], 0)  # gives up at once, as a timeout would later
    stored = [await sends[0], await sends[2]]
    assert stored[0] == stored[1]  # one stored message, the one that gave up inside it
    second = await launcher.start(DURABLE, args, slot="co-w", incarnation=2)
    got = [m["got"] for m in await collect(node, 3)]
    assert got == [["a", 0], ["a", 1], ["a", 2]]  # given up on, and stored all the same
    await second.stop()


async def test_kill_mid_batch_runs_exactly_the_unrecorded_sends_again(launcher, node):
    total = 1000
    args = {"report_to": str(node.pid)}
    first = await launcher.start(DURABLE, args, slot="co-k")
    await first.stop()
    at = positions(await burst(node, first.pid, [["a", i] for i in range(total)]))
    assert sum(1 for p in at if p[1] != WHOLE) > total // 2  # mostly inside batches
    first = await launcher.start(DURABLE, args, slot="co-k", incarnation=2)
    before = await collect(node, 100)  # inside the second batch
    os.kill(first.os_pid, 9)
    await first.wait()
    kv = await Store(launcher.nc.jetstream(), launcher.namespace).kv()
    try:
        progress = Progress.parse((await kv.get(f"d.{first.pid.slot_token}")).value)
    except KeyNotFoundError:  # killed before its first record
        progress = Progress((0, WHOLE))
    recorded = sum(1 for p in at if progress.covers(p))
    assert [m["got"][1] for m in before] == list(range(len(before)))
    second = await launcher.start(DURABLE, args, slot="co-k", incarnation=3)
    expected = list(range(recorded, total))
    deadline = time.monotonic() + 60
    after: list[int] = []
    while len(after) < len(expected):
        left = deadline - time.monotonic()
        assert left > 0, f"stuck at {after[-5:]}"
        try:
            report = await node.receive(timeout=left)
        except TimeoutError:
            raise AssertionError(f"stuck at {after[-5:]}: {second.stderr()[-3000:]}") from None
        if report["by"] == str(second.pid):
            after.append(report["got"][1])
    # Sends the record covers, inside the batch it was cut in too, do not run again.
    assert after == expected
    stats = await settled(second.pid, "durable_delivered", len(expected))
    assert stats["durable_delivered"] == len(expected)
    assert stats["parked"] == 0
    await second.stop()


async def test_a_batch_recorded_in_part_and_not_acknowledged_runs_only_the_rest(launcher, node):
    """The crash window de-duplication covers, inside a batch: a record written for part of
    a stored message, and no ack (with the backend's rights: only the actor itself may
    write that record)."""
    args = {"report_to": str(node.pid)}
    first = await launcher.start(DURABLE, args, slot="co-d")
    await first.stop()
    seqs = await burst(node, first.pid, [["a", i] for i in range(40)])
    at = positions(seqs)
    cut = next(i for i, p in enumerate(at) if p[1] == 3)  # the fourth send of a batch
    kv = await Store(launcher.nc.jetstream(), launcher.namespace).kv()
    await kv.put(f"d.{first.pid.slot_token}", Progress(at[cut]).encode())
    second = await launcher.start(DURABLE, args, slot="co-d", incarnation=2)
    got = [m["got"] for m in await collect(node, 40 - cut - 1)]
    assert got == [["a", i] for i in range(cut + 1, 40)]
    stats = await settled(second.pid, "durable_delivered", len(got))
    assert stats["durable_delivered"] == len(got)
    # Every send of the record's messages counts once: those before the cut's message
    # whole, and the cut's message's first four.
    assert stats["durable_duplicates"] == len({s for s in seqs[:cut] if s != seqs[cut]}) + 4
    await second.stop()


async def test_the_one_send_of_a_batch_that_crashes_is_parked_alone(launcher, node):
    args = {"report_to": str(node.pid)}
    extra = ["--mailbox-max-deliver", "2"]
    first = await launcher.start(DURABLE, args, slot="co-p", extra=extra)
    await first.stop()
    messages: list[object] = [["a", i] for i in range(40)]
    messages.insert(20, "poison")
    seqs = await burst(node, first.pid, messages)
    poison = seqs[20]
    assert seqs.count(poison) > 1  # the poison travels in a batch with others
    for incarnation in (2, 3):  # each crashes on it, having run what came before it
        crashing = await launcher.start(
            DURABLE, args, slot="co-p", incarnation=incarnation, extra=extra
        )
        assert "poisoned" in str(await crashing.wait())
    third = await launcher.start(DURABLE, args, slot="co-p", incarnation=4, extra=extra)
    got = [m["got"] for m in await collect(node, 40)]
    assert got == [["a", i] for i in range(40)]  # each once, in order, the batch-mates too
    stats = await settled(third.pid, "parked", 1)
    assert stats["parked"] == 1
    js = node.nc.jetstream()
    parked = await js.get_last_msg(
        _durable_stream.stream_name(launcher.namespace), _durable_stream.parked_subject(first.pid)
    )
    assert parked.headers is not None
    assert parked.headers["Rebeam-Parked-Seq"] == str(poison)
    assert parked.headers["Rebeam-Parked-Item"] == str(seqs[: 20 + 1].count(poison) - 1)
    assert parked.headers["Rebeam-Parked-Attempts"] == "3"
    assert unpack(parked.data).body == "poison"  # the send alone, replayable as it is
    await third.stop()


async def test_a_refused_batch_refuses_each_of_its_sends_and_loses_none(launcher, node):
    # Room for 3 stored messages per sender (the limit is 10 000: too many for a test).
    js = launcher.nc.jetstream()
    config = (await js.stream_info(_durable_stream.stream_name(launcher.namespace))).config
    config.max_msgs_per_subject = 3
    await js.update_stream(config)
    args = {"report_to": str(node.pid)}
    first = await launcher.start(DURABLE, args, slot="co-b")
    await first.stop()
    sends = [_durable_batch.publish(node, first.pid, CAST, ["a", i]) for i in range(300)]
    results = await asyncio.gather(*sends, return_exceptions=True)
    stored = [r for r in results if isinstance(r, int)]
    refused = [r for r in results if not isinstance(r, int)]
    assert all(isinstance(r, rebeam.MailboxFull) for r in refused), refused[:3]
    assert len(set(stored)) == 3
    assert refused
    # Refused whole and in order: no send is stored after one that was refused.
    assert results[: len(stored)] == stored
    second = await launcher.start(DURABLE, args, slot="co-b", incarnation=2)
    got = [m["got"] for m in await collect(node, len(stored))]
    assert got == [["a", i] for i in range(len(stored))]
    await second.stop()


async def test_the_bound_counts_sends_not_stored_messages(launcher, node):
    """10 000 sends wait per sender and durable actor, however few stored messages hold
    them; once the actor took them, there is room again."""
    args = {"report_to": str(node.pid)}
    first = await launcher.start(DURABLE, args, slot="co-n")
    await first.stop()
    limit = _durable_batch.MAX_WAITING
    stored = await burst(node, first.pid, [["a", i] for i in range(limit)])
    assert len(set(stored)) < limit // 10  # far fewer stored messages than sends
    over = [_durable_batch.publish(node, first.pid, CAST, ["b", i]) for i in range(100)]
    refused = await asyncio.gather(*over, return_exceptions=True)
    assert all(isinstance(r, rebeam.MailboxFull) for r in refused), refused[:3]
    second = await launcher.start(DURABLE, args, slot="co-n", incarnation=2)
    got = [m["got"] for m in await collect(node, limit, timeout=180)]
    assert got == [["a", i] for i in range(limit)]  # the refused ones are not among them
    await settled(second.pid, "durable_delivered", limit)
    deadline = time.monotonic() + 30
    while True:  # until the server has deleted what was acknowledged
        try:
            await _durable_batch.publish(node, second.pid, CAST, ["c", 0])
            break
        except rebeam.MailboxFull:
            assert time.monotonic() < deadline, "still full after the actor took everything"
            await asyncio.sleep(0.05)
    assert [m["got"] for m in await collect(node, 1)] == [["c", 0]]
    await second.stop()


def test_a_batch_framed_otherwise_than_its_header_says_is_refused() -> None:
    items = [b"one", b"", b"three"]
    data = _durable_batch.frame(items)
    header = _durable_batch.BATCH_HEADER
    assert _durable_batch.items_of(data, {header: "3"}) == items
    assert _durable_batch.items_of(data, None) == [data]  # no header: one envelope
    for count, body in [
        ("2", data),  # bytes left over
        ("4", data),  # truncated
        ("0", b""),
        (str(_durable_batch.MAX_ITEMS + 1), data),
        ("x", data),
        ("-1", data),
        ("3", data[:-1]),  # an item runs past the end
    ]:
        with pytest.raises(CodecError):
            _durable_batch.items_of(body, {header: count})


def test_progress_records_positions_inside_a_batch() -> None:
    records = [b"7", b"7.3", b"0", b"7 a=8.2:2 h=9-11,12.4,15", b"7 h=8", b"7 a=8:1"]
    for record in [*records, b"7.3 h=7.5"]:  # the last: more of the floor's own batch
        assert Progress.parse(record).encode() == record
    # An older record's note of deliveries that were no attempts is read without it.
    assert Progress.parse(b"7.3 5.0 2") == Progress((7, 3))
    assert Progress.parse(b"7 6 1 h=9") == Progress((7, WHOLE), None, ((9, WHOLE),))
    assert Progress.parse(b"7").done == (7, WHOLE)
    assert Progress.parse(b"7.3").done < Progress.parse(b"7").done
    # Handled above the floor, out of order: what lies between was not.
    progress = Progress.parse(b"7 h=9-11,12.4")
    assert progress.items == ((9, WHOLE), (10, WHOLE), (11, WHOLE), (12, 4))
    assert [progress.covers(at) for at in [(7, 2), (8, WHOLE), (10, 0), (12, 4), (12, 5)]] == [
        True, False, True, True, False,
    ]  # fmt: skip
    bad_records = [b"7.", b".3", b"7.3.1", b"7 6", b"7.99999999999", b"7 6 x", b"7 h=6", b"7 h="]
    bad_records += [b"7 a=8", b"7 a=8:x", b"7 a=:1", b"7 a=8:1 6 1"]
    bad_records += [b"7 h=9,9", b"7 h=11-9", b"7 h=9.1-11", b"7 h=8-99999", b"7" * 200_000]
    for bad in bad_records:
        with pytest.raises(ValueError, match=r"not a|recorded|run of"):
            Progress.parse(bad)


async def test_a_forged_send_in_a_batch_is_parked_alone_and_a_misframed_batch_whole(launcher, node):
    args = {"report_to": str(node.pid)}
    actor = await launcher.start(DURABLE, args, slot="co-h")
    js = node.nc.jetstream()
    subject = _subjects.durable_queue(actor.pid, node.pid)  # this sender's own queue
    to = _durable_batch.durable_address(actor.pid)

    def envelope(sender: str, body: object) -> bytes:
        return pack_fields(CAST, to, sender, 1, body)

    me = str(node.pid)
    forged = envelope(str(actor.pid), ["forged"])  # as if someone else had sent it
    batch = [envelope(me, ["a", 0]), forged, envelope(me, ["a", 1])]
    header = _durable_batch.BATCH_HEADER
    await js.publish(subject, _durable_batch.frame(batch), headers={header: "3"})
    misframed = _durable_batch.frame([envelope(me, ["lost", 0]), envelope(me, ["lost", 1])])
    await js.publish(subject, misframed, headers={header: "3"})
    await node.cast(actor.pid, ["a", 2], durable=True)
    got = [m["got"] for m in await collect(node, 3)]
    assert got == [["a", 0], ["a", 1], ["a", 2]]
    stats = await settled(actor.pid, "parked", 2)
    assert stats["parked"] == 2
    assert stats["malformed"] >= 1
    parked = []
    stream = _durable_stream.stream_name(launcher.namespace)
    where = _durable_stream.parked_subject(actor.pid)
    seq = 0
    for _ in range(2):
        msg = await js.get_msg(stream, seq=seq + 1, subject=where, next=True)
        parked.append(msg)
        seq = int(msg.seq)
    assert parked[0].data == forged  # the forged send alone
    assert parked[0].headers["Rebeam-Parked-Item"] == "1"
    assert parked[1].data == misframed  # the batch whole: it cannot be split
    assert "malformed batch" in parked[1].headers["Rebeam-Parked-Reason"]
    await actor.stop()
