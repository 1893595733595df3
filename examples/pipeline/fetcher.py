"""Fetches a few batches (made up here: no network needed) and hands each to the parser,
then ends normally: a transient child that ended normally is not restarted."""

from __future__ import annotations

from typing import Any

import rebeam

BATCHES = 3


class Fetcher(rebeam.Actor):
    async def init(self, args: Any) -> None:
        self.fetched = 0
        self.send_after(0, "fetch")  # once init has returned

    async def handle_info(self, message: Any) -> None:
        if message != "fetch":
            return
        self.fetched += 1
        text = "\n".join(f"batch {self.fetched} line {i}" for i in range(3))
        reply = await rebeam.call("parser", {"text": text})
        print(f"batch {self.fetched}: stored {reply['ok']} rows")
        if self.fetched < BATCHES:
            self.send_after(0.1, "fetch")
        else:
            self.stop()  # normal: transient, so not restarted
