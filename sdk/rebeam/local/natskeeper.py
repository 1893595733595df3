"""The private nats-server, kept running: restarted when it dies, within a budget.

Everything in a local tree talks through the private nats-server, so its death would leave
the tree deaf. When its process ends (seen by its exit, not by a lost connection), it is
reaped at once and started again on the same port with the same JetStream store: clients
reconnect by themselves (nats-py does), acknowledged JetStream data survives, and the registry
and the children carry on. The budget works as a supervisor's intensity: at most
:data:`RESTARTS` restarts within :data:`WINDOW` seconds; one more death and the keeper gives
up, and ``rebeam run`` ends the tree with that reason. A restart that fails counts as a death.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable

from rebeam.local.endwatch import process_end
from rebeam.natsd import NatsServer, NatsServerError
from rebeam.supervision import RestartIntensity

__all__ = ["RESTARTS", "WINDOW", "ServerKeeper"]

log = logging.getLogger("rebeam.run")

RESTARTS = 3
WINDOW = 30.0


def describe_end(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


class ServerKeeper:
    """Watches ``server``; ``on_spawn``/``on_end`` hear each server process's pid as it
    starts and once it is reaped, ``on_restarted`` each successful restart."""

    def __init__(
        self,
        server: NatsServer,
        *,
        on_spawn: Callable[[int], None],
        on_end: Callable[[int], None],
        on_restarted: Callable[[], object],
        restarts: int = RESTARTS,
        window: float = WINDOW,
    ) -> None:
        self.server = server
        self.on_spawn = on_spawn
        self.on_end = on_end
        self.on_restarted = on_restarted
        # The deaths inside the window, counted as a supervisor counts its restarts.
        self._budget = RestartIntensity(restarts, window)
        self._live_pid = server.pid
        server.on_spawn = self._spawned

    def _spawned(self, pid: int) -> None:
        self._live_pid = pid
        self.on_spawn(pid)

    def _ended(self) -> None:
        if self._live_pid is not None:
            self.on_end(self._live_pid)
            self._live_pid = None

    async def keep(self) -> str:
        """Runs while the server can be kept up; returns why it cannot any more."""
        while True:
            process = self.server.process
            assert process is not None
            what = f"(pid {process.pid}) {describe_end(await process_end(process))}"
            self._ended()
            budget = self._budget
            while True:
                if not budget.add_restart(time.monotonic()):
                    return (
                        f"the private nats-server {what}: that is {len(budget.history)} times "
                        f"within {budget.period:g}s, so it was not restarted again and the tree "
                        "was shut down"
                    )
                log.warning(
                    "the private nats-server %s; restarting it on port %d "
                    "(restart %d of at most %d within %gs)",
                    what,
                    self.server.port,
                    len(budget.history),
                    budget.intensity,
                    budget.period,
                )
                try:
                    await self.server.restart_async()
                except NatsServerError as exc:
                    self._ended()
                    what = f"could not be restarted ({exc})"
                    continue
                break
            self.on_restarted()
