"""A minute of the soak (docs/soak.md) in the normal test run: the bank under each fault
alone and then all together, with short phases. It asserts the invariants, not speed: a
busy machine makes it slower, never wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.soak import partition
from tests.soak.faults import Rates
from tests.soak.manifest import Bank
from tests.soak.report import render
from tests.soak.soak import FAULTS, Schedule, soak

SMOKE = Schedule(baseline=4.0, fault=6.0, after=3.0)  # 49 s of phases


@pytest.mark.nats
@pytest.mark.timeout(300)
async def test_a_minute_of_faults_breaks_no_invariant(tmp_path: Path) -> None:
    result = await soak(tmp_path, Bank(rate=10.0), SMOKE, Rates(nats_every=20.0))
    report = render(result)
    assert result.findings.violations == 0, report
    assert result.orphans == [], report
    assert result.exit_code == 0, report
    # Every fault was really injected, and money really moved under each.
    injected = {fault for _, fault, _ in result.log.entries}
    assert injected >= {"kill", "stop", "nats", "overload"}, report
    assert result.findings.acknowledged > 0, report
    assert result.findings.audits > 0, report
    assert [p.name for p in result.phases if p.faults] == [*FAULTS, "all"], report


@pytest.mark.nats
@pytest.mark.timeout(300)
async def test_rolling_server_kills_on_a_cluster_break_no_invariant(tmp_path: Path) -> None:
    """The bank on a three-server cluster (``rebeam run --nats``): one server killed and
    brought back at a time, then (as root, with iptables) one cut off and healed at a time.
    Short: the kills of children are the other test's."""
    cluster_faults = ("nats",) if partition.unavailable() else ("nats", "partition")
    schedule = Schedule(3.0, 9.0, 3.0, cluster_faults, together=False, cluster=True)
    rates = Rates(nats_every=0.5, partition_for=3.0)
    result = await soak(tmp_path, Bank(rate=10.0), schedule, rates)
    report = render(result)
    assert result.findings.violations == 0, report
    assert result.orphans == [], report
    assert result.exit_code == 0, report
    servers = {target.split(" ")[0] for _, fault, target in result.log.entries if fault == "nats"}
    assert len(servers) >= 2, report  # a rolling kill, not one server again and again
    if "partition" in cluster_faults:
        cut = [target for _, fault, target in result.log.entries if fault == "partition"]
        assert len(set(cut)) >= 2, report
    assert result.findings.acknowledged > 0, report
