"""The bank's manifest for ``rebeam run``: one supervisor over the accounts, tellers and
auditor, allowed restarts enough that the soak's kill storms never end the tree (the storm
tests recovery, not the supervisor's intensity, which tests/local covers)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

APP = Path(__file__).parent / "app"


@dataclass(frozen=True)
class Bank:
    accounts: int = 5
    tellers: int = 2
    initial: int = 1_000  # per account
    rate: float = 20.0  # transfers a second per teller, before any overload

    def account_names(self) -> list[str]:
        return [f"acct-{i}" for i in range(self.accounts)]

    def teller_names(self) -> list[str]:
        return [f"teller-{i}" for i in range(self.tellers)]

    @property
    def total(self) -> int:
        return self.accounts * self.initial


def manifest(bank: Bank, data: Path) -> str:
    names = bank.account_names()
    children = [
        _child(name, "bank.account:Account", {"name": name, "dir": str(data),
               "initial": bank.initial}, register=name)
        for name in names
    ]  # fmt: skip
    children += [
        _child(name, "bank.teller:Teller",
               {"name": name, "dir": str(data), "accounts": names, "rate": bank.rate},
               register=name)
        for name in bank.teller_names()
    ]  # fmt: skip
    children.append(
        _child("auditor", "bank.auditor:Auditor", {"dir": str(data), "accounts": names})
    )
    return "\n".join([
        "apiVersion: rebeam.io/v1alpha1",
        "kind: Supervisor",
        "metadata: {name: bank}",
        "spec:",
        "  strategy: one_for_one",
        "  intensity: 100000",
        "  period: 1s",
        "  children:",
        *children,
        "",
    ])  # fmt: skip


def _child(name: str, module: str, args: dict[str, object], register: str | None = None) -> str:
    actor = {"module": module, "args": args}
    if register:
        actor["register"] = register
    return f"    - {{name: {name}, actor: {json.dumps(actor)}}}"
