"""Durations in manifests: ``500ms``, ``5s``, ``1m30s``, ``2h``, or a whole number of seconds.

Both backends read the same manifests, and the Kubernetes API server validates them with the
pattern below, so the two must agree: a whole number means seconds; anything else is a string
of number-unit pairs. Floats are refused on purpose (the CRD's int-or-string type has no room
for them): write ``1.5s`` or ``1500ms``.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["DURATION_PATTERN", "MAX_SECONDS", "format_duration", "parse_duration"]

MAX_SECONDS: Final = 365 * 24 * 3600
_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART: Final = r"[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h)"
DURATION_PATTERN: Final = rf"^(?:{_PART})+$"
_PART_RE: Final = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_WHOLE_RE: Final = re.compile(DURATION_PATTERN)


def parse_duration(value: object) -> float:
    """Seconds, from a whole number of seconds or a duration string. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError("must be a duration like 5s or 500ms, or a whole number of seconds")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must not be negative")
        return float(_bounded(value))  # bounded first: float() of a huge int overflows
    if isinstance(value, str) and _WHOLE_RE.match(value.strip()):
        return _bounded(sum(float(n) * _UNITS[unit] for n, unit in _PART_RE.findall(value)))
    if isinstance(value, float):
        if value < 0:
            raise ValueError("must not be negative")
        _bounded(value)  # the suggestion below is no use for a number beyond the limit
        raise ValueError(
            f"{value} is not a whole number of seconds: write a duration like "
            f"{format_duration(value)}"
        )
    raise ValueError("must be a duration like 5s, 500ms or 1m30s, or a whole number of seconds")


def _bounded(seconds: float) -> float:
    # Timers, pod grace periods (whole seconds in 64 bits) and format_duration all need a
    # finite number; a year is far beyond any restart window or timeout that makes sense.
    if not seconds <= MAX_SECONDS:
        raise ValueError(f"must be at most {MAX_SECONDS // 3600}h (a year)")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest manifest spelling of ``seconds`` (``5s``, ``500ms``, ``1.5s``)."""
    if seconds and seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds:g}s"
