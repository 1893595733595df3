"""``python -m tests.soak`` (``make soak``): the bank under every fault, then the report,
printed and written to a file. Exit code 1 if any invariant was broken."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

from tests.soak.compare import side_by_side
from tests.soak.faults import Rates
from tests.soak.kube import KUBE_FAULTS, KubeRates, kube_soak, local_cluster
from tests.soak.manifest import Bank
from tests.soak.partition import unavailable
from tests.soak.ray_soak import RAY_FAULTS, ray_python, ray_soak
from tests.soak.report import render
from tests.soak.soak import CLUSTER_FAULTS, FAULTS, Result, Schedule, soak


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    p.add_argument("--baseline", type=float, default=20.0, help="seconds before any fault")
    p.add_argument("--fault", type=float, default=30.0, help="seconds of each fault phase")
    p.add_argument("--after", type=float, default=20.0, help="quiet seconds after each")
    p.add_argument(
        "--faults",
        help=f"of {','.join(CLUSTER_FAULTS)} (partition: --cluster only); default: all",
    )
    p.add_argument("--no-together", action="store_true", help="skip all faults at once")
    p.add_argument("--rate", type=float, default=20.0, help="transfers/s per teller")
    p.add_argument("--accounts", type=int, default=5)
    p.add_argument("--tellers", type=int, default=2)
    p.add_argument("--kills", type=float, default=2.0, help="SIGKILLs a second")
    p.add_argument("--stops", type=float, default=0.5, help="SIGSTOPs a second")
    p.add_argument("--nats-every", type=float, default=15.0, help="seconds between kills")
    p.add_argument("--overload", type=float, default=10.0, help="times the teller rate")
    p.add_argument("--server-down", type=float, default=3.0, help="with --cluster: seconds")
    p.add_argument("--partition-for", type=float, default=5.0, help="with --cluster: seconds")
    p.add_argument(
        "--cluster",
        action="store_true",
        help="on a three-server NATS cluster; the nats fault kills one server at a time",
    )
    backend = p.add_mutually_exclusive_group()
    backend.add_argument(
        "--kubernetes",
        action="store_true",
        help="on the operator and the test control plane (make controlplane); faults "
        f"{','.join(KUBE_FAULTS)}",
    )
    backend.add_argument(
        "--ray",
        action="store_true",
        help="also the same bank on Ray actors (.cache/venv-bench), side by side; faults "
        f"{','.join(RAY_FAULTS)}",
    )
    p.add_argument("--operator-every", type=float, default=10.0, help="with --kubernetes: s")
    p.add_argument("--node-down", type=float, default=20.0, help="with --kubernetes: s")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--report", type=Path, default=Path(".cache/soak.md"))
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    a = p.parse_args()
    if a.cluster and (a.kubernetes or a.ray):
        p.error("--cluster is for rebeam run alone")
    allowed = KUBE_FAULTS if a.kubernetes else RAY_FAULTS if a.ray else FAULTS
    if a.cluster:
        allowed = CLUSTER_FAULTS
    if a.faults is None:
        a.faults = ",".join(allowed)
        if a.cluster and unavailable():
            print(f"no partitions: {unavailable()}", file=sys.stderr)
            a.faults = ",".join(FAULTS)
    unknown = set(a.faults.split(",")) - set(allowed)
    if unknown:
        p.error(f"unknown faults {sorted(unknown)}: choose from {','.join(allowed)}")
    schedule = Schedule(
        a.baseline, a.fault, a.after, tuple(f for f in a.faults.split(",") if f),
        not a.no_together, a.cluster,
    )  # fmt: skip
    rates = Rates(a.kills, a.stops, 1.5, a.nats_every, a.overload, a.server_down, a.partition_for)
    bank = Bank(a.accounts, a.tellers, 1_000, a.rate)
    workdir = Path(tempfile.mkdtemp(prefix="rebeam-soak-"))
    try:
        if a.kubernetes:
            kube_rates = KubeRates(a.operator_every, node_down=a.node_down)
            results = [asyncio.run(_on_kubernetes(workdir, bank, schedule, rates, kube_rates, a))]
        elif a.ray:
            python = ray_python()
            if python is None:
                p.error("Ray could not be set up in .cache/venv-bench")
            (workdir / "rebeam").mkdir()
            (workdir / "ray").mkdir()
            results = [
                asyncio.run(soak(workdir / "rebeam", bank, schedule, rates, a.seed)),
                asyncio.run(ray_soak(workdir / "ray", python, bank, schedule, rates, a.seed)),
            ]
        else:
            results = [asyncio.run(soak(workdir, bank, schedule, rates, a.seed))]
        text = "\n".join(render(r) for r in results)  # before the files go: it reads births
        if len(results) == 2:
            text = f"{side_by_side(results[0], results[1], 'Ray')}\n{text}"
    finally:
        if not a.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    a.report.parent.mkdir(parents=True, exist_ok=True)
    a.report.write_text(text)
    print(text)
    print(f"(written to {a.report}{'; work directory ' + str(workdir) if a.keep else ''})")
    bad = sum(r.findings.violations + len(r.orphans) for r in results)
    return 1 if bad else 0


async def _on_kubernetes(
    workdir: Path,
    bank: Bank,
    schedule: Schedule,
    rates: Rates,
    kube_rates: KubeRates,
    a: argparse.Namespace,
) -> Result:
    with local_cluster(workdir) as site:
        os.environ["REBEAM_CREDENTIALS"] = site.cluster.admin_token()  # the operator's clients
        return await kube_soak(workdir / "bank", site, bank, schedule, rates, kube_rates, a.seed)


if __name__ == "__main__":
    sys.exit(main())
