"""The checker: after the run, from what the accounts wrote down (their journals), what the
tellers were told (their logs of acknowledged transfers), the auditor's totals, the
lifecycle events and the observer's look at the process table, every way the bank can be
wrong, counted. Each count must be 0 (docs/soak.md, "What it proves")."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.soak import journal_files
from tests.soak.manifest import Bank
from tests.soak.observer import Observer

STALLED = 5.0  # seconds without a look at the process table that make the look worthless


@dataclass
class Findings:
    expected_total: int
    final_total: int = 0
    live_total: int | None = None  # the accounts' own answer after the drain
    balances: dict[str, int] = field(default_factory=dict)
    acknowledged: int = 0
    transfers: int = 0  # debits applied
    declined: int = 0
    audits: int = 0
    problems: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    more_kinds: list[str] = field(default_factory=list)  # a backend's own checks, reported too

    def add(self, kind: str, detail: str) -> None:
        self.problems[kind].append(detail)

    def count(self, kind: str) -> int:
        return len(self.problems.get(kind, []))

    @property
    def violations(self) -> int:
        return sum(len(v) for v in self.problems.values())

    KINDS = (
        "total changed",
        "audit total wrong",
        "acknowledged transfer lost",
        "applied twice",
        "money from nowhere",
        "credit never arrived",
        "negative balance",
        "two live incarnations (process table)",
        "two live incarnations (events)",
        "damaged record",
        "observer failed",
    )


def check(bank: Bank, data: Path, observer: Observer, live_total: int | None = None) -> Findings:
    found = Findings(bank.total, live_total=live_total)
    debits, credits, declined = _ledgers(bank, data, found)
    _money(bank, found, debits, credits, declined)
    _acknowledged(bank, data, found, debits, credits, declined)
    _audits(data, found)
    _incarnations(observer, found)
    return found


Entries = dict[str, list[tuple[str, dict[str, Any]]]]


def _ledgers(bank: Bank, data: Path, found: Findings) -> tuple[Entries, Entries, Entries]:
    debits: Entries = defaultdict(list)
    credits: Entries = defaultdict(list)
    declined: Entries = defaultdict(list)
    for name in bank.account_names():
        balance = bank.initial
        for record in journal_files.records(data / f"{name}.jsonl", found):
            kind = record.get("k")
            if kind == "debit":
                debits[record["id"]].append((name, record))
                balance -= record["amount"]
            elif kind == "credit":
                credits[record["id"]].append((name, record))
                balance += record["amount"]
            elif kind == "declined":
                declined[record["id"]].append((name, record))
            if balance < 0:
                found.add("negative balance", f"{name} after {record}")
        found.balances[name] = balance
    return debits, credits, declined


def _money(
    bank: Bank, found: Findings, debits: Entries, credits: Entries, declined: Entries
) -> None:
    found.final_total = sum(found.balances.values())
    if found.final_total != bank.total:
        found.add("total changed", f"{found.final_total} at the end, {bank.total} at the start")
    if found.live_total is not None and found.live_total != bank.total:
        found.add("total changed", f"the accounts answered {found.live_total} after the drain")
    found.transfers = len(debits)
    found.declined = len(declined)
    for tid in set(debits) | set(credits) | set(declined):
        decisions = len(debits.get(tid, [])) + len(declined.get(tid, []))
        if decisions > 1 or len(credits.get(tid, [])) > 1:
            found.add("applied twice", f"{tid}: {debits.get(tid)} {credits.get(tid)}")
    for tid, [(account, credit), *_] in credits.items():
        source = debits.get(tid)
        if not source:
            found.add("money from nowhere", f"{tid} credited to {account} without a debit")
            continue
        origin, debit = source[0]
        if (debit["to"], debit["amount"], origin) != (account, credit["amount"], credit["from"]):
            found.add("money from nowhere", f"{tid}: debit {debit}, credit {credit}")
    for tid, [(account, debit), *_] in debits.items():
        if tid not in credits:
            found.add("credit never arrived", f"{tid}: {debit['amount']} from {account}")


def _acknowledged(
    bank: Bank, data: Path, found: Findings, debits: Entries, credits: Entries, declined: Entries
) -> None:
    for teller in bank.teller_names():
        for ack in journal_files.records(data / f"{teller}.acks.jsonl", found):
            found.acknowledged += 1
            tid, outcome = ack["id"], ack["outcome"]
            applied = [r for a, r in debits.get(tid, []) if a == ack["from"]]
            refused = [r for a, r in declined.get(tid, []) if a == ack["from"]]
            if outcome == "applied":
                ok = bool(applied) and applied[0]["amount"] == ack["amount"] and tid in credits
            elif outcome == "declined":
                ok = bool(refused)
            else:  # stored durably: decided one way or the other, once
                ok = bool(refused) or (bool(applied) and tid in credits)
            if not ok:
                found.add("acknowledged transfer lost", f"{teller}: {ack}")


def _audits(data: Path, found: Findings) -> None:
    for audit in journal_files.records(data / "audits.jsonl", found):
        if audit.get("complete"):
            found.audits += 1
            if audit["total"] != found.expected_total:
                found.add("audit total wrong", str(audit))


def _incarnations(observer: Observer, found: Findings) -> None:
    if observer.failure is not None:
        found.add("observer failed", repr(observer.failure))
    if observer.longest_gap > STALLED:  # two incarnations could have overlapped unseen
        found.add("observer failed", f"it did not look for {observer.longest_gap:.1f}s")
    for overlap in observer.overlaps:
        found.add(
            "two live incarnations (process table)",
            f"{overlap.path}: os pids {overlap.os_pids} at {overlap.t:.3f}",
        )
    running: dict[str, int] = {}
    for event in observer.lifecycle:
        child, incarnation = event.get("child"), event.get("incarnation")
        if not child or incarnation is None:
            continue
        if event["event"] == "started":
            if child in running:
                found.add(
                    "two live incarnations (events)",
                    f"{child}#{incarnation} started while #{running[child]} had not exited",
                )
            running[child] = incarnation
        elif event["event"] == "exited" and running.get(child) == incarnation:
            del running[child]
