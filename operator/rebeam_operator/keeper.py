"""The shard keeper of one operator replica: it holds the Leases of its shards, renews them,
takes free or expired ones up to its fair share, gives back what is above it, and stops
acting on a shard by itself at its renew deadline (docs/operator.md, "Replicas and shards").

Two loops:

* the **round** (every ``retry`` seconds): list the set's leases, note what changed
  (shards.py judges expiry on this replica's clock), keep this replica's membership lease,
  then release, renew and take as :func:`~rebeam_operator.shards.plan` says;
* the **fence**: at a held shard's deadline — ``renew deadline`` after the last renewal that
  succeeded was *sent* — the shard is dropped (its drivers stopped, its events ignored),
  whatever the round is doing. :meth:`Keeper.owns` also checks the clock, so nothing is
  acted on past the deadline even if the fence runs late.

A shard is released only after its drivers are stopped, and taken only by a write against
the resourceVersion read (leases.py): two replicas never both win one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from rebeam._loop import within
from rebeam_operator import metrics
from rebeam_operator.kube import Conflict
from rebeam_operator.leases import Leases, lease_body
from rebeam_operator.shards import Seen, plan, shard_of

__all__ = ["Keeper"]

log = logging.getLogger("rebeam.operator")

Json = dict[str, Any]

STALE_MEMBERS = 10  # a membership lease unrenewed this many durations is deleted


class Keeper:
    def __init__(
        self,
        leases: Leases,
        *,
        shards: int,
        me: str,
        prefix: str,
        duration: int,
        on_acquired: Callable[[set[int]], None],
        on_lost: Callable[[set[int]], None],
    ) -> None:
        self.leases = leases
        self.shards = shards
        self.me = me
        self.prefix = prefix
        self.duration = duration
        # The timing of docs/operator.md: stop acting well before anyone may take over.
        self.renew_deadline = duration * 2 / 3
        self.retry = duration / 6
        self.on_acquired = on_acquired
        self.on_lost = on_lost
        self.deadlines: dict[int, float] = {}  # held shard -> when acting on it must stop
        self._read: dict[str, Json] = {}  # lease name -> the lease as last read or written
        self._seen: dict[str, tuple[tuple[str, str], Seen]] = {}  # name -> (record, Seen)
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._failing = False

    # --- what others ask -----------------------------------------------------------------

    def owns(self, namespace: str) -> bool:
        """Whether this replica may act on ``namespace``'s trees now."""
        deadline = self.deadlines.get(shard_of(namespace, self.shards))
        return deadline is not None and time.monotonic() < deadline

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._rounds(), name="shard rounds"),
            asyncio.create_task(self._fence(), name="shard fence"),
        ]

    async def stop(self) -> None:
        """Stop acting on every shard, then hand them back at once (best effort: otherwise
        they expire) and leave the membership."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        held = set(self.deadlines)
        self._lose(held, "the operator is stopping")
        with contextlib.suppress(Exception):
            await within(self._give_back(held), self.renew_deadline)

    async def _give_back(self, held: set[int]) -> None:
        for shard in sorted(held):
            await self._write(self._shard_name(shard), "")
        await self.leases.delete(self._member_name())

    # --- names ---------------------------------------------------------------------------

    def _shard_name(self, shard: int) -> str:
        return f"{self.prefix}-shard-{shard}"

    def _member_name(self) -> str:
        return f"{self.prefix}-replica-{self.me}"  # fits: settings.py bounds both parts

    def _shard_number(self, name: str) -> int | None:
        rest = name.removeprefix(f"{self.prefix}-shard-")
        if rest == name or not rest.isdigit() or int(rest) >= self.shards:
            return None
        return int(rest)

    # --- the round -----------------------------------------------------------------------

    async def _rounds(self) -> None:
        while True:
            try:
                await self._round()
                if self._failing:
                    log.info("shard leases reachable again")
                self._failing = False
            except Exception as exc:  # the fence still runs: nothing is acted on unleased
                if not self._failing:  # one line per outage, not one per round
                    log.warning("cannot keep the shard leases: %s", exc)
                self._failing = True
            await asyncio.sleep(self.retry)

    async def _round(self) -> None:
        now = time.monotonic()
        self._observe(await self.leases.list(self.prefix), now)
        by_shard: dict[int, Seen] = {}
        members: list[Seen] = []
        for name, (_, seen) in self._seen.items():
            shard = self._shard_number(name)
            if shard is not None:
                by_shard[shard] = seen
            elif name.startswith(f"{self.prefix}-replica-"):
                members.append(seen)
        held = [s for s, deadline in self.deadlines.items() if deadline > now]
        todo = plan(self.shards, self.me, by_shard, members, held, now)
        await asyncio.gather(*(self._renew(shard) for shard in todo.renew))  # first: timing
        if todo.release:
            self._lose(set(todo.release), "above this replica's fair share")
            for shard in todo.release:  # if this fails, the lease expires instead
                with contextlib.suppress(Exception):
                    await self._write(self._shard_name(shard), "")
        try:
            await self._write(self._member_name(), self.me)
        except Conflict:  # deleted or written meanwhile: re-read next round
            self._read.pop(self._member_name(), None)
        taken = set()
        for shard in todo.take:  # each on its own: one that fails costs the others nothing
            if await self._take(shard):
                taken.add(shard)
        if taken:
            log.info("took shard(s) %s", ",".join(map(str, sorted(taken))))
            self.on_acquired(taken)
        await self._sweep(now)
        metrics.SHARDS_OWNED.set(len(self.deadlines))

    def _observe(self, items: list[Json], now: float) -> None:
        """Note each lease; a record (holder, renewal) not seen before starts its clock."""
        names = set()
        for item in items:
            name = item["metadata"]["name"]
            names.add(name)
            spec = item.get("spec") or {}
            record = (str(spec.get("holderIdentity") or ""), str(spec.get("renewTime") or ""))
            self._read[name] = item
            old = self._seen.get(name)
            if old is None or old[0] != record:
                duration = float(spec.get("leaseDurationSeconds") or self.duration)
                self._seen[name] = (record, Seen(record[0], now, duration))
        for name in set(self._seen) - names:  # deleted: a shard lease is then free
            del self._seen[name]
            self._read.pop(name, None)

    async def _write(self, name: str, holder: str) -> Json:
        """Write ``name`` held by ``holder`` against what was read; create it if it never
        existed. Conflict if someone else wrote it meanwhile."""
        previous = self._read.get(name)
        body = lease_body(name, self.prefix, holder, self.duration, previous)
        if previous is None:
            written = await self.leases.create(body)
        else:
            written = await self.leases.replace(body)
        self._read[name] = written
        return written

    async def _renew(self, shard: int) -> None:
        name = self._shard_name(shard)
        holder = ((self._read.get(name) or {}).get("spec") or {}).get("holderIdentity")
        if holder != self.me:  # the timing forbids it; a write now would take it back
            self._lose({shard}, f"its lease names {holder or 'nobody'}")
            return
        sent = time.monotonic()
        try:
            await self._write(name, self.me)
        except Conflict:
            self._lose({shard}, "its lease was written by someone else")
            return
        except Exception as exc:  # the deadline stands: the fence drops it if this lasts
            log.info("cannot renew shard %s: %s", shard, exc)
            return
        if shard in self.deadlines:  # not dropped by the fence meanwhile
            self._hold(shard, sent)

    async def _take(self, shard: int) -> bool:
        sent = time.monotonic()
        try:
            await self._write(self._shard_name(shard), self.me)
        except Conflict:
            return False  # another replica was quicker
        except Exception as exc:  # tried again next round, if it is still free
            log.info("cannot take shard %s: %s", shard, exc)
            return False
        self._hold(shard, sent)
        return True

    def _hold(self, shard: int, sent: float) -> None:
        # From when the write was sent, not when it was answered: the others' clocks for
        # this renewal start only once it is stored, which is later.
        self.deadlines[shard] = sent + self.renew_deadline
        self._changed.set()

    async def _sweep(self, now: float) -> None:
        """Delete membership leases of replicas long gone (a crashed pod never deletes its
        own); the count of live replicas is not affected, they expired long ago."""
        for name, (_, seen) in list(self._seen.items()):
            if (
                name.startswith(f"{self.prefix}-replica-")
                and name != self._member_name()
                and now - seen.since >= STALE_MEMBERS * seen.duration
            ):
                with contextlib.suppress(Exception):
                    await self.leases.delete(name)

    # --- the fence -----------------------------------------------------------------------

    def _lose(self, shards: set[int], why: str) -> None:
        shards = {s for s in shards if self.deadlines.pop(s, None) is not None}
        if shards:
            log.warning("dropped shard(s) %s: %s", ",".join(map(str, sorted(shards))), why)
            self.on_lost(shards)
            metrics.SHARDS_OWNED.set(len(self.deadlines))

    async def _fence(self) -> None:
        while True:
            now = time.monotonic()
            self._lose({s for s, d in self.deadlines.items() if d <= now}, "not renewed in time")
            self._changed.clear()
            wait = min(self.deadlines.values(), default=now + self.retry) - now
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wait, 0.01)):
                    await self._changed.wait()
