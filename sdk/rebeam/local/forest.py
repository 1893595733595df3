"""The trees of one ``rebeam run``: its root supervisors, in start order, reachable by path.

The run starts the roots and adds each here as it starts; requests from other terminals
(control.py) and the live view (view.py) find supervisors here, so neither needs the run
itself. While the trees start, a request may name a supervisor that does not exist yet: it
waits for it to be created (arrivals.py), until every root has started.
"""

from __future__ import annotations

import asyncio

from rebeam.local.arrivals import Arrivals
from rebeam.local.supervisors import SupervisorRunner

__all__ = ["Forest"]


class Forest:
    def __init__(self) -> None:
        self.roots: list[SupervisorRunner] = []
        # Every runner of the run announces here that it was created (RunContext.arrivals).
        self.arrivals = Arrivals()
        self._started = asyncio.Event()  # every root has started, or the start was given up

    def plant(self, root: SupervisorRunner) -> None:
        """A root about to start: reachable while it starts (see :meth:`reach`)."""
        self.roots.append(root)

    def all_started(self) -> None:
        """Every root has started, or the start was given up: no supervisor that is not
        there now will appear for a request to wait for."""
        self._started.set()

    async def until_started(self) -> None:
        """Until every root has started (or the start was given up)."""
        await self._started.wait()

    async def reach(self, path: str) -> SupervisorRunner | None:
        """The supervisor at ``path``; while the trees start, waits for it to be created
        (its parent may not have come to it yet). None once it cannot appear any more."""
        while True:
            runner = self.supervisor_at(path)
            if runner is not None or self._started.is_set():
                return runner
            arrived = asyncio.ensure_future(self.arrivals.next())
            started = asyncio.ensure_future(self._started.wait())
            try:
                await asyncio.wait({arrived, started}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                arrived.cancel()
                started.cancel()

    async def parent_of(self, path: str) -> tuple[SupervisorRunner, str] | None:
        """The supervisor of the child at ``path``, and the child's id in it; waits for the
        supervisor as :meth:`reach` does."""
        parent, _, name = path.strip("/").rpartition("/")
        runner = await self.reach(parent) if parent else None
        return (runner, name) if runner else None

    def supervisor_at(self, path: str) -> SupervisorRunner | None:
        """The running supervisor at ``path`` (``shop`` or ``shop/storage``)."""
        parts = path.strip("/").split("/")
        runner = next((r for r in self.roots if r.path == parts[0]), None)
        for part in parts[1:]:
            child = runner.children.get(part) if runner else None
            runner = child if isinstance(child, SupervisorRunner) else None
        return runner
