"""The fuzz tier's tally: every fuzz test records what it tried on which input surface.

At the end of the session ``conftest.py`` prints one table: inputs tried, crashes (a process
that died or an exception other than the surface's documented refusal) and tracebacks shown
to a user. The last two must be 0; a fuzz test asserts that itself, the table is the report.

Usage::

    from tests.fuzz.report import tally

    @given(...)
    def test_decoder_never_crashes(data):
        with tally("mailbox envelope") as t:
            ...            # feed one input
            t.crash()      # only if it crashed
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class Surface:
    tried: int = 0
    crashes: int = 0
    tracebacks: int = 0


@dataclass
class _Tally:
    surface: Surface
    crashed: bool = field(default=False)

    def crash(self) -> None:
        self.crashed = True

    def traceback(self) -> None:
        self.surface.tracebacks += 1


SURFACES: dict[str, Surface] = {}


@contextlib.contextmanager
def tally(surface: str) -> Iterator[_Tally]:
    """Count one input on ``surface``; an exception escaping the block counts as a crash."""
    entry = SURFACES.setdefault(surface, Surface())
    entry.tried += 1
    counter = _Tally(entry)
    try:
        yield counter
    except BaseException:
        entry.crashes += 1
        raise
    if counter.crashed:
        entry.crashes += 1


def table() -> list[str]:
    rows = [f"{'surface':<32} {'tried':>8} {'crashes':>8} {'tracebacks':>10}"]
    for name in sorted(SURFACES):
        s = SURFACES[name]
        rows.append(f"{name:<32} {s.tried:>8} {s.crashes:>8} {s.tracebacks:>10}")
    return rows
