"""Restart intensity: at most ``intensity`` restarts within any ``period`` seconds
(docs/semantics.md, "Intensity").

OTP keeps a list of restart timestamps, newest first. On every restart *decision* — before
any child is started — it adds ``now``, drops the timestamps older than the window, and gives
up if more than ``intensity`` remain. We do the same on a float clock with an inclusive
window (``now - t <= period``), where OTP uses whole seconds; the difference only shows for
gaps within a second of ``period``, and the float clock is the one users can reason about.

The history is plain data so that a backend can keep it across its own restarts (the
operator keeps it in a Supervisor's status): a restarted operator must neither forget nor
double-count restarts.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["RestartIntensity"]


class RestartIntensity:
    def __init__(self, intensity: int, period: float, history: Iterable[float] = ()) -> None:
        self.intensity = intensity
        self.period = period
        self._history: list[float] = sorted(history, reverse=True)

    @property
    def history(self) -> tuple[float, ...]:
        """Restart times inside the last window seen, newest first."""
        return tuple(self._history)

    def in_window(self, now: float) -> int:
        """How many restarts happened within ``period`` of ``now`` (for status and views)."""
        return sum(1 for t in self._history if now - t <= self.period)

    def add_restart(self, now: float) -> bool:
        """Record a restart decision at ``now``. False: the limit is exceeded, give up."""
        self._history = [now, *(t for t in self._history if now - t <= self.period)]
        return len(self._history) <= self.intensity
