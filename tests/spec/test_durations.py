from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rebeam.spec.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5.0), ("500ms", 0.5), ("1m30s", 90.0), ("2h", 7200.0), ("1.5s", 1.5), (7, 7.0)],
)
def test_parse(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5", "s", "-1s", "1d", True, -3, 2.5, None])
def test_refused(bad: object) -> None:
    with pytest.raises(ValueError, match=r"duration|negative|whole number"):
        parse_duration(bad)


@given(st.integers(0, 10**6))
def test_format_then_parse_round_trips_milliseconds(ms: int) -> None:
    assert parse_duration(format_duration(ms / 1000)) == pytest.approx(ms / 1000)


@pytest.mark.parametrize(
    "huge", [10**400, 1e259, float("inf"), "1" * 400 + "s", "8761h", 365 * 24 * 3600 + 1]
)
def test_at_most_a_year_with_a_short_message(huge: object) -> None:
    # A huge int used to overflow float() and a huge float to print all its digits back.
    with pytest.raises(ValueError, match=r"^must be at most 8760h \(a year\)$"):
        parse_duration(huge)


def test_a_year_is_fine() -> None:
    assert parse_duration("8760h") == parse_duration(365 * 24 * 3600) == 365 * 24 * 3600
