"""The garbage collector's pauses kept short on a large heap (docs/operator.md, "Scale").

With 10,000 pods the operator keeps hundreds of thousands of long-lived containers (each pod
as its watch last showed it, each slot's spec and status). CPython's full collection walks
every one of them, and it runs whenever the objects promoted since the last one reach a
quarter of the old heap: on a loaded 2-core machine a walk of that heap took seconds, and a
restart whose pod event arrived during one waited for it.

What survives a full collection is the operator's state, freed by reference counting when
replaced (a pod seen anew drops the last view of it, JSON dicts hold no cycles). So right
after each full collection the survivors are moved out of the collector's sight
(``gc.freeze``), and the next full collection walks only what came since. The price: a cycle
that forms among frozen objects and is then dropped is not collected while frozen. So once
twice the live heap has been frozen since the last full walk, everything is handed back
(``gc.unfreeze``) for one: the garbage kept that way is bounded by a multiple of the live
heap, and a long walk comes once per two heaps' worth of new objects (at rest, never), where
CPython's own rule walks the heap whenever a quarter of it is new. The frozen objects are
counted as they are frozen: ``gc.get_freeze_count`` walks the whole frozen list each time.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any, Final

__all__ = ["Heap", "install"]

FIRST_THAW: Final = 100_000  # frozen objects before the first thaw (a small heap: no matter)
HEAPS_BEFORE_THAW: Final = 2  # live heaps' worth of objects frozen between two full walks
OLDEST: Final = 2  # the generation a full collection collects


class Heap:
    """Reacts to the collector's callbacks: freezes the survivors of each full collection,
    thaws once twice the live heap was frozen since; times every collection for ``observe``."""

    def __init__(self, observe: Callable[[int, float], None] | None = None) -> None:
        self._observe = observe
        self._started = 0.0
        self._heap = 0  # the survivors of the last full walk: the live heap then
        self._since = 0  # objects frozen since
        self._thawed = False  # the next full collection walks everything
        self.freezes = 0
        self.thaws = 0

    def callback(self, phase: str, info: dict[str, Any]) -> None:
        generation = int(info["generation"])
        if phase == "start":
            self._started = time.perf_counter()
            return
        if self._observe is not None:
            self._observe(generation, time.perf_counter() - self._started)
        if generation == OLDEST:
            self.after_full_collection()

    def after_full_collection(self) -> None:
        """Called when a full collection has ended: what is left is alive, all of it in the
        oldest generation (the young ones were part of the collection)."""
        survivors = len(gc.get_objects(generation=OLDEST))  # only what came since a freeze
        if self._thawed:  # that was a full walk: the live heap, all of it
            self._thawed, self._heap, self._since = False, survivors, 0
        else:
            self._since += survivors
            if self._since >= max(FIRST_THAW, HEAPS_BEFORE_THAW * self._heap):
                # Everything back into the oldest generation; the next full collection (when
                # the promotions since reach a quarter of what it held) walks it all.
                gc.unfreeze()
                self._thawed = True
                self.thaws += 1
                return
        gc.freeze()
        self.freezes += 1


def install(observe: Callable[[int, float], None] | None = None) -> Heap:
    """Start managing the collector for this process; returns the policy (for its counts)."""
    heap = Heap(observe)
    gc.callbacks.append(heap.callback)
    return heap
