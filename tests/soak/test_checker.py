"""The checker finds what it is there to find: a bank that breaks each invariant on purpose,
written as journals and events by hand, is caught on each count (a checker that never
fails would make the soak prove nothing)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.soak.check import check
from tests.soak.manifest import Bank
from tests.soak.observer import Observer, Overlap

BANK = Bank(accounts=2, tellers=1, initial=100)


def _write(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _observer(tmp_path: Path) -> Observer:
    return Observer(run_pid=0, data=tmp_path, events=tmp_path / "events.jsonl")


def _debit(tid: str, amount: int, to: str = "acct-1") -> dict[str, Any]:
    return {"k": "debit", "id": tid, "to": to, "amount": amount}


def _credit(tid: str, amount: int, source: str = "acct-0") -> dict[str, Any]:
    return {"k": "credit", "id": tid, "from": source, "amount": amount}


def _ack(tid: str, amount: int, outcome: str = "applied") -> dict[str, Any]:
    return {"id": tid, "from": "acct-0", "to": "acct-1", "amount": amount, "via": "call",
            "outcome": outcome, "t0": 0.0, "t1": 0.1}  # fmt: skip


def test_a_correct_history_has_no_finding(tmp_path: Path) -> None:
    _write(tmp_path / "acct-0.jsonl", [_debit("t.1.1", 5), {"k": "sent", "id": "t.1.1"}])
    _write(tmp_path / "acct-1.jsonl", [_credit("t.1.1", 5)])
    _write(tmp_path / "teller-0.acks.jsonl", [_ack("t.1.1", 5)])
    _write(tmp_path / "audits.jsonl", [{"complete": True, "total": 200}])
    found = check(BANK, tmp_path, _observer(tmp_path), live_total=200)
    assert found.violations == 0, dict(found.problems)
    assert (found.acknowledged, found.transfers, found.audits) == (1, 1, 1)


def test_each_broken_invariant_is_found(tmp_path: Path) -> None:
    _write(tmp_path / "acct-0.jsonl", [
        _debit("t.1.1", 5),
        _debit("t.1.1", 5),  # applied twice
        _debit("t.1.2", 500),  # overdrawn, and its credit never arrives
    ])  # fmt: skip
    _write(tmp_path / "acct-1.jsonl", [
        _credit("t.1.1", 5),
        _credit("t.1.9", 7),  # money from nowhere
    ])  # fmt: skip
    _write(tmp_path / "teller-0.acks.jsonl", [_ack("t.1.3", 4)])  # acknowledged, lost
    (tmp_path / "audits.jsonl").write_text('{"complete": true, "total": 199}\nnot json\n')
    observer = _observer(tmp_path)
    observer.overlaps.append(Overlap(1.0, "acct-0", [10, 11]))
    observer.lifecycle += [
        {"event": "started", "child": "acct-0", "incarnation": 1},
        {"event": "started", "child": "acct-0", "incarnation": 2},  # #1 never exited
    ]
    observer.longest_gap = 9.0
    found = check(BANK, tmp_path, observer, live_total=200)
    for kind in found.KINDS:
        assert found.count(kind) > 0, f"{kind} not found: {dict(found.problems)}"
