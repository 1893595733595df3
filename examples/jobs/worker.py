"""One job: its args are the template's merged with those given to ``rebeam start-child``
(``{"retries": 0, "url": ...}``). It does its work and ends normally; a temporary child is
never restarted, whatever its end."""

from __future__ import annotations

from typing import Any

import rebeam


class Job(rebeam.Actor):
    async def init(self, args: Any) -> None:
        self.url = args.get("url", "nowhere")
        self.send_after(0, "work")

    async def handle_info(self, message: Any) -> None:
        if message == "work":
            print(f"{self.pid}: fetched {self.url}")
            self.stop()
