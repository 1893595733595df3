"""Actors of the attack suite: a bank that says who called it, and a compromised teller.

The teller stands for an actor an attacker has taken over: its code hands its credential and
pid to the attacker (a file the test reads), exactly what code running inside it could do.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import rebeam


class Bank(rebeam.Actor):
    async def init(self, args: Any) -> None:
        self.balance = 100

    async def handle_call(self, msg: Any, from_: Any) -> Any:
        if msg == "stats":
            return dict(self.node.stats_snapshot())
        return {"from": str(from_.pid), "balance": self.balance}

    async def handle_info(self, msg: Any) -> None:
        if isinstance(msg, dict) and "take" in msg:
            self.balance -= int(msg["take"])


class Teller(rebeam.Actor):
    def init(self, args: Any) -> None:  # plain: it only reads and writes two small files
        source = os.environ.get("REBEAM_CREDENTIALS_FILE")
        token = Path(source).read_text() if source else None
        loot = {"pid": str(self.node.pid), "token": token}
        # Written whole, then renamed: the test reads it as soon as the name exists.
        partial = Path(f"{args['loot']}.partial")
        partial.write_text(json.dumps(loot))
        partial.rename(args["loot"])
