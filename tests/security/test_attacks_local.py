"""The attack suite against the local backend: every attack is refused, by the server, with
an error that names it (docs/security.md, "What the attack suite shows").

``REBEAM_ATTACKS_OPEN=1`` runs the same attacks against an open server instead, where each
must succeed: the suite can tell. It is not part of ``make test``; its table is in the
security docs.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.security.attacks import ATTACKS, Attack
from tests.security.harness import World, build, tear_down

OPEN = os.environ.get("REBEAM_ATTACKS_OPEN") == "1"

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    built = await build(tmp_path, secure=not OPEN)
    try:
        yield built
    finally:
        await tear_down(built)


async def test_every_attack_is_refused(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    results: dict[str, tuple[bool, str]] = {}
    for name, attack in ATTACKS.items():
        results[name] = await _run(attack, world)
    with capsys.disabled():
        print(f"\nattack suite, {'OPEN server' if OPEN else 'secured'}:")
        for name, (succeeded, evidence) in results.items():
            print(f"  {'SUCCEEDED' if succeeded else 'refused  '}  {name}: {evidence[:110]}")
    expected = OPEN
    wrong = {n: e for n, (ok, e) in results.items() if ok is not expected}
    assert not wrong, wrong
    if not OPEN:
        # Refused, and the tree is whole: the bank still answers, as its first incarnation.
        answer = await world.a.owner.call("bank", "balance", timeout=5)
        assert answer["balance"] == 100
        assert world.a.events.lines().count("started vault#1") == 1
        assert not any(e["event"] == "exited" for e in world.a.events.poll())


async def _run(attack: Attack, world: World) -> tuple[bool, str]:
    return await attack(world)
