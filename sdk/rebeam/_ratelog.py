"""Warnings about refused input at a bounded rate.

Whoever can publish to a subject can make its subscriber refuse a message per message sent:
a log line per refusal would let them fill the disk and drown every other line. A
:class:`RateLog` writes at most ``burst`` lines per ``interval`` seconds for each reason,
and then, once that interval is over, one line saying how many more it left out. The
counters in ``stats()`` count every refusal; the log only has to say that it happens.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["DEFAULT_BURST", "DEFAULT_INTERVAL", "RateLog"]

DEFAULT_BURST = 5
DEFAULT_INTERVAL = 10.0
_MAX_DETAIL = 200  # characters of one refusal's detail: it may quote the input


@dataclass
class _Window:
    start: float
    level: int
    logged: int = 0
    left_out: int = 0
    flushing: bool = False


class RateLog:
    """At most ``burst`` warnings per ``interval`` seconds per reason, for one ``prefix``
    (a node's pid, say), then one summary of the rest."""

    def __init__(
        self,
        logger: logging.Logger,
        prefix: str,
        *,
        burst: int = DEFAULT_BURST,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.prefix = prefix
        self.burst = burst
        self.interval = interval
        self._clock = clock
        # One entry per reason: reasons are fixed strings in the code, never input.
        self._windows: dict[str, _Window] = {}

    def warning(self, reason: str, detail: str = "") -> None:
        """Log ``<prefix>: <reason>: <detail>`` unless this reason used up its lines in the
        current interval; then count it for the summary."""
        self._log(logging.WARNING, reason, detail)

    def error(self, reason: str, detail: str = "") -> None:
        """As :meth:`warning`, at level ERROR."""
        self._log(logging.ERROR, reason, detail)

    def _log(self, level: int, reason: str, detail: str) -> None:
        now = self._clock()
        window = self._windows.get(reason)
        if window is None or now - window.start >= self.interval:
            if window is not None:
                self._summarise(reason, window)
            window = self._windows[reason] = _Window(now, level)
        if window.logged < self.burst:
            window.logged += 1
            if len(detail) > _MAX_DETAIL:
                detail = detail[: _MAX_DETAIL - 3] + "..."
            self.logger.log(level, "%s: %s%s", self.prefix, reason, f": {detail}" if detail else "")
            return
        window.left_out += 1
        if not window.flushing:
            window.flushing = True
            self._flush_later(reason, window)

    def _flush_later(self, reason: str, window: _Window) -> None:
        # The summary is due when the interval ends, also if nothing else is refused by
        # then; without a running loop it is written by the next refusal after the interval.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        delay = max(0.0, window.start + self.interval - self._clock())
        loop.call_later(delay, self._flush, reason, window)

    def _flush(self, reason: str, window: _Window) -> None:
        if self._windows.get(reason) is window:
            del self._windows[reason]
        self._summarise(reason, window)

    def _summarise(self, reason: str, window: _Window) -> None:
        if window.left_out:
            self.logger.log(
                window.level,
                "%s: %s: ... and %d more in %gs",
                self.prefix,
                reason,
                window.left_out,
                self.interval,
            )
            window.left_out = 0
