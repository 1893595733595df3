"""The collector's policy (heap.py): a full collection walks only what came since the last
one, and a cycle dropped among the frozen objects is collected once the frozen set doubled."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from rebeam_operator import heap as heap_module
from rebeam_operator.heap import Heap


class Node:
    """An object that can be in a cycle and be watched by a weakref."""

    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Heap, list[int]]]:
    monkeypatch.setattr(heap_module, "FIRST_THAW", 10**9)  # no thaw unless a test asks
    pauses: list[int] = []
    heap = heap_module.install(lambda generation, seconds: pauses.append(generation))
    try:
        yield heap, pauses
    finally:
        gc.callbacks.remove(heap.callback)
        gc.unfreeze()
        gc.collect()


def test_a_full_collection_leaves_its_survivors_frozen(
    installed: tuple[Heap, list[int]],
) -> None:
    heap, pauses = installed
    state = [{"pod": i, "labels": {"a": "b"}} for i in range(20_000)]  # the long-lived heap
    gc.collect()
    assert heap.freezes >= 1
    assert 2 in pauses
    assert gc.get_freeze_count() >= len(state)
    assert len(gc.get_objects(generation=2)) < len(state) // 10  # the next walk skips them


def test_state_replaced_is_freed_while_frozen(installed: tuple[Heap, list[int]]) -> None:
    state = {"pod": Node()}
    seen = weakref.ref(state["pod"])
    gc.collect()
    state["pod"] = Node()  # a newer view replaces the old: no cycle, freed at once
    assert seen() is None


def test_a_cycle_dropped_while_frozen_is_collected_after_a_thaw(
    installed: tuple[Heap, list[int]],
) -> None:
    heap, _ = installed
    a, b = Node(), Node()
    a.other, b.other = b, a
    seen = weakref.ref(a)
    gc.collect()  # the cycle is alive: frozen with the rest
    del a, b
    gc.collect()
    assert seen() is not None  # kept while frozen: the price of short walks
    heap._since = 10**9  # as if two live heaps had been frozen since the last full walk
    gc.collect()  # thaws
    gc.collect()  # walks everything once, and freezes what is alive
    assert heap.thaws == 1
    assert seen() is None
    assert heap._heap > 0
    assert heap._since == 0
