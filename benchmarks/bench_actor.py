"""The actor process the benchmarks talk to. Given a subject prefix, its init also sets up the
raw baselines, so rebeam and raw nats-py are measured between the same two processes; those
raw subjects need a BACKEND grant (an actor's may not touch them). The raw responder has a
plain nats-py connection of its own, with the actor's credential: rebeam's connections are
read by rebeam._reader, and the baseline is what a nats-py program gets."""

from __future__ import annotations

from typing import Any

import nats

import rebeam
from rebeam import _codec as rebeam_codec
from rebeam import metrics
from rebeam._connecting import credentials_from_environment

METRICS_SWITCH = "metrics-enabled"  # a call [METRICS_SWITCH, on] sets rebeam.metrics.ENABLED


class BenchActor(rebeam.Actor):
    async def init(self, args: Any) -> None:
        self.casts = 0
        self.raw_casts = 0
        if args and args.get("prefix"):
            await self._raw_baselines(args["prefix"])

    async def _raw_baselines(self, prefix: str) -> None:
        credentials = credentials_from_environment()
        token = credentials() if callable(credentials) else credentials
        url = self.node.nc.connected_url.geturl()
        nc = self.raw_nc = await nats.connect(url, token=token, name="bench-raw-responder")

        async def raw_echo(msg: Any) -> None:
            await nc.publish(msg.reply, msg.data)

        async def raw_call(msg: Any) -> None:
            # A nats-py responder's least: decode the request, encode the answer.
            await nc.publish(msg.reply, rebeam_codec.encode(rebeam_codec.decode(msg.data)))

        # A request on the cast subject marks the end of a round (see bench_cast): answered
        # with the count, after every message published before it.
        async def raw_cast(msg: Any) -> None:
            self.raw_casts += 1
            if msg.reply:
                await nc.publish(msg.reply, str(self.raw_casts).encode())

        async def raw_cast_decoded(msg: Any) -> None:
            # The same, plus decoding the payload: what any real subscriber does.
            self.raw_casts += 1
            if msg.reply:
                await nc.publish(msg.reply, str(self.raw_casts).encode())
            else:
                rebeam_codec.decode(msg.data)

        async def raw_count(msg: Any) -> None:
            await nc.publish(msg.reply, str(self.raw_casts).encode())

        await nc.subscribe(f"{prefix}.echo", cb=raw_echo)
        await nc.subscribe(f"{prefix}.call", cb=raw_call)
        await nc.subscribe(f"{prefix}.cast", cb=raw_cast)
        await nc.subscribe(f"{prefix}.cast-decoded", cb=raw_cast_decoded)
        await nc.subscribe(f"{prefix}.count", cb=raw_count)
        await nc.flush()

    async def terminate(self, reason: Any) -> None:
        raw_nc = getattr(self, "raw_nc", None)
        if raw_nc is not None:
            await raw_nc.close()

    async def handle_call(self, message: Any, from_: rebeam.From) -> Any:
        if message == "casts":
            return self.casts
        if type(message) is list and message[:1] == [METRICS_SWITCH]:
            # bench_metrics: this process's metrics on or off, as REBEAM_METRICS would set
            # them at its start (rebeam.metrics reads the switch at every timing).
            metrics.ENABLED = bool(message[1])
            return metrics.ENABLED
        return message

    async def handle_cast(self, message: Any) -> None:
        self.casts += 1


class Idle(rebeam.Actor):
    """Does nothing: for the idle RSS figure."""
