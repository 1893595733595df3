"""``rebeam mailbox ls|parked|replay``: look into durable mailboxes and give parked messages
back (docs/sdk.md, "Durable mailboxes").

* ``ls``: every durable mailbox of the namespace (one per slot with a consumer or with
  messages kept for it): waiting, delivered and not yet acknowledged, redelivered, parked;
* ``parked SLOT``: the parked messages of a slot, oldest first, decoded (a message that does
  not decode is shown as its bytes, cut short), at most ``--limit``;
* ``replay SLOT (SEQ... | --all)``: publish parked messages again into the slot's queue, as
  their original sender (the envelope says who), then delete the parked copy.

All of it is the owner's (docs/security.md): an actor's credential may not read the stream,
nor write a durable queue as anyone but itself.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import nats
import nats.js.errors as jserr

from rebeam import _durable_stream, _subjects
from rebeam._envelope import CAST, unpack
from rebeam.cli._common import FAILURES, client_node
from rebeam.cli.messages import printable
from rebeam.errors import CodecError, RebeamError
from rebeam.pids import Pid, unescape_token

__all__ = ["run"]

MAX_LIMIT = 1000  # parked messages shown at most, whatever --limit says
_SHOWN_BYTES = 200  # of a message that does not decode
_SHOWN_CHARS = 2000  # of a decoded message, as JSON


class Refused(Exception):
    """A request this command will not carry out (nothing was done)."""


def run(args: argparse.Namespace) -> int:
    if args.mailbox_command == "replay" and bool(args.seqs) == bool(args.all):
        print("rebeam: replay: give the SEQs of parked messages, or --all", file=sys.stderr)
        return 2
    if args.mailbox_command == "parked" and args.limit < 1:
        print("rebeam: parked: --limit must be at least 1", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_main(args))
    except Refused as exc:
        print(f"rebeam: {exc}", file=sys.stderr)
        return 2
    except (*FAILURES, RebeamError, jserr.Error) as exc:
        print(f"rebeam: {_problem(exc)}", file=sys.stderr)
        return 1


def _problem(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if "permissions violation" in text.lower() or isinstance(exc, nats.errors.TimeoutError):
        # A denied JetStream request is not answered: the client times out.
        return f"{text} (does this credential have the namespace owner's rights?)"
    return text


async def _main(args: argparse.Namespace) -> int:
    node = await client_node(args)
    try:
        action = ACTIONS[args.mailbox_command]
        code: int = await action(node.nc.jetstream(timeout=5.0), args)
        return code
    finally:
        await node.close()


async def _ls(js: Any, args: argparse.Namespace) -> int:
    stream = _durable_stream.stream_name(args.namespace)
    try:
        info = await js.stream_info(stream, subjects_filter=_subjects.durable_all(args.namespace))
    except jserr.NotFoundError:
        print("no durable mailboxes in this namespace")
        return 0
    waiting: dict[str, int] = {}
    parked: dict[str, int] = {}
    for subject, count in (info.state.subjects or {}).items():
        parts = subject.split(".")  # rebeam.<ns>.dmbox.(q|parked).<slot token>...
        if len(parts) >= 5 and parts[3] == "q":
            waiting[parts[4]] = waiting.get(parts[4], 0) + count
        elif len(parts) == 5 and parts[3] == "parked":
            parked[parts[4]] = parked.get(parts[4], 0) + count
    consumers: dict[str, Any] = {}
    offset = 0
    while True:  # 256 a page
        page = await js.consumers_info(stream, offset=offset)
        for consumer in page:
            if consumer.name.startswith("q-"):
                consumers[consumer.name[2:]] = consumer
        if len(page) < 256:
            break
        offset += len(page)
    slots = sorted({*waiting, *parked, *consumers})
    if not slots:
        print("no durable mailboxes in this namespace")
        return 0
    rows = [("SLOT", "WAITING", "UNACKED", "REDELIVERED", "PARKED", "CONSUMER")]
    for token in slots:
        consumer = consumers.get(token)
        rows.append(
            (
                unescape_token(token),
                str(waiting.get(token, 0)),
                str(consumer.num_ack_pending) if consumer else "-",
                str(consumer.num_redelivered) if consumer else "-",
                str(parked.get(token, 0)),
                "yes" if consumer else "none yet",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    return 0


def _slot(args: argparse.Namespace) -> Pid:
    try:
        return Pid.for_incarnation(args.namespace, args.slot, 1)
    except ValueError as exc:
        raise Refused(f"not a slot: {exc}") from None


async def _parked_messages(js: Any, args: argparse.Namespace, limit: int) -> list[Any]:
    """Up to ``limit`` parked messages of the slot, oldest first."""
    stream = _durable_stream.stream_name(args.namespace)
    subject = _durable_stream.parked_subject(_slot(args))
    found: list[Any] = []
    seq = 0
    while len(found) < limit:
        try:
            msg = await js.get_msg(stream, seq=seq + 1, subject=subject, next=True)
        except jserr.NotFoundError:
            break
        found.append(msg)
        seq = int(msg.seq)
    return found


async def _parked(js: Any, args: argparse.Namespace) -> int:
    limit = min(args.limit, MAX_LIMIT)
    found = await _parked_messages(js, args, limit + 1)
    if not found:
        print(f"no parked messages for {args.slot}")
        return 0
    for msg in found[:limit]:
        headers = msg.headers or {}
        print(
            f"seq {msg.seq}: {headers.get('Rebeam-Parked-Reason', '?')} "
            f"(after {headers.get('Rebeam-Parked-Attempts', '?')} deliveries)"
        )
        print(f"  {_shown(msg.data or b'')}")
    if len(found) > limit:
        print(f"(more parked messages: --limit {limit} shown)")
    return 0


def _shown(data: bytes) -> str:
    """A parked message for a person: its envelope decoded, else its bytes, cut short."""
    try:
        env = unpack(data)
    except CodecError as exc:
        cut = data[:_SHOWN_BYTES]
        more = f" ... ({len(data)} bytes)" if len(data) > _SHOWN_BYTES else ""
        return f"not a valid envelope ({exc}): {cut!r}{more}"
    kind = "cast" if env.kind == CAST else "send"
    text = printable(env.body)
    if len(text) > _SHOWN_CHARS:
        text = text[:_SHOWN_CHARS] + f" ... ({len(text)} characters)"
    return f"{kind} from {env.sender}: {text}"


async def _replay(js: Any, args: argparse.Namespace) -> int:
    stream = _durable_stream.stream_name(args.namespace)
    slot = _slot(args)
    if args.all:
        chosen = await _parked_messages(js, args, MAX_LIMIT)
    else:
        chosen = []
        for seq in args.seqs:
            try:
                msg = await js.get_msg(stream, seq=seq)
            except jserr.NotFoundError:
                raise Refused(f"no message {seq} in {stream}") from None
            if msg.subject != _durable_stream.parked_subject(slot):
                raise Refused(f"message {seq} is not a parked message of {args.slot}")
            chosen.append(msg)
    for msg in chosen:  # all checked before any is replayed
        _sender(msg)
    for msg in chosen:
        subject = _subjects.durable_queue(slot, _sender(msg))
        # The parked copy's sequence as the message id: a replay retried is stored once.
        headers = {"Nats-Msg-Id": f"replay:{stream}:{msg.seq}"}
        await js.publish(subject, msg.data, headers=headers)
        await js.delete_msg(stream, msg.seq)
        print(f"replayed {msg.seq}")
    if not chosen:
        print(f"no parked messages for {args.slot}")
    return 0


def _sender(msg: Any) -> Pid:
    """Who sent a parked message (its queue subject holds the sender, and the receiver
    checks the envelope against it); Refused if its envelope does not say."""
    try:
        return Pid.parse(str(unpack(msg.data or b"").sender))
    except (CodecError, ValueError):
        raise Refused(
            f"message {msg.seq} is not a valid envelope: it cannot be replayed "
            "(`rebeam mailbox parked` shows it)"
        ) from None


ACTIONS: dict[str, Callable[[Any, argparse.Namespace], Awaitable[int]]] = {
    "ls": _ls,
    "parked": _parked,
    "replay": _replay,
}
"""What each ``rebeam mailbox ACTION`` does, given the namespace's JetStream context."""
