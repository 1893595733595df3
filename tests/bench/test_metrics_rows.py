"""The judged metrics row for casts (docs/observability.md, "What it costs"): the receiver's
CPU per cast at a fixed rate counts only the rounds whose every turn kept up, and is not
judged when fewer than half of them did (the rate was not sustained)."""

from __future__ import annotations

import pytest
from benchmarks.bench_metrics import LATE, _cpu_row

STEADY, BEHIND = LATE / 10, LATE * 5  # a turn's lag: mailbox empty soon, or long, after it


def test_a_round_whose_turn_fell_behind_is_left_out() -> None:
    # Round 1 fell behind: its backlog was cheap per cast, on looks 20% cheaper there.
    off = [1000.0, 1000.0, 1000.0]
    on = [1040.0, 800.0, 1020.0]
    lags = [[STEADY] * 4, [STEADY, BEHIND, STEADY, STEADY], [STEADY] * 4]
    row = _cpu_row([off, on], lags, 50_000, "3 rounds")
    assert row.ratio == pytest.approx(1.03)  # with round 1, the median would be 1.02
    assert row.ok is True
    assert "the rate was sustained: 2 of 3 rounds steady" in row.note


def test_too_few_steady_rounds_and_the_row_is_not_judged() -> None:
    off, on = [1000.0] * 3, [1200.0] * 3
    lags = [[BEHIND] * 4, [STEADY, BEHIND], [STEADY] * 4]
    row = _cpu_row([off, on], lags, 50_000, "3 rounds")
    assert row.ok is None  # neither met nor failed: the figure is not the steady one
    assert row.ratio == pytest.approx(1.2)  # all rounds shown
    assert "NOT sustained, not judged: only 1 of 3 rounds steady" in row.note
