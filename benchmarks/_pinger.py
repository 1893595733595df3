"""The actor bench_restart restarts, in a module of its own: each incarnation imports it
after the fork, and it imports nothing the benchmark harness needs (that is in the time)."""

from typing import Any

import rebeam


class Pinger(rebeam.Actor):
    """Answers every call at once, with its incarnation: the benchmark stops the clock only
    at an answer from the new one."""

    async def handle_call(self, message: Any, from_: rebeam.From) -> Any:
        return self.pid.incarnation
