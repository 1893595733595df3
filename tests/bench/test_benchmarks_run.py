"""The benchmarks still run, as smoke runs: ``python -m benchmarks --quick`` and a short
``python -m benchmarks.bench_restart``, on a secured server as users run rebeam (and an open
one for the comparison rows). No figure is checked (a shared 2-core machine moves them):
every row must be printed, and nothing may fail."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.nats, pytest.mark.timeout(400)]


def _bench(*args: str) -> str:
    # subprocess.run kills the benchmark by its pid on a timeout; what it started dies with
    # it (each benchmark process is started with PR_SET_PDEATHSIG).
    out = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=360,
        check=False,
    )
    assert out.returncode == 0, f"{args} exited {out.returncode}:\n{out.stderr[-3000:]}"
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    return out.stdout


def _metrics(table: str) -> set[str]:
    return {line.split(" | ")[0].strip() for line in table.splitlines() if " | " in line}


def test_the_quick_benchmark_prints_every_row() -> None:
    metrics = _metrics(_bench("benchmarks", "--quick", "--no-ray"))
    assert {
        "call p50 vs raw request/reply",
        "call p50, secured vs open",
        "cast throughput vs raw publish",
        "cast throughput, secured vs open",
        "(for reference) nats-server CPU per cast",
        "whereis p50, cached",
        "whereis p50, uncached vs raw KV get",
        "idle actor RSS vs bare nats client",
        "durable cast throughput vs raw JetStream",
        "call p50, tracing on vs off",
        "cast throughput, tracing on vs off",
        "cast throughput, metrics on vs off",
        "receiver CPU per cast, metrics on vs off",
        "call p50, metrics on vs off",
    } <= metrics


def test_the_restart_benchmark_prints_every_row() -> None:
    out = _bench("benchmarks.bench_restart", "-n", "2", "--no-ray", "--steps")
    assert {
        "restart p50 (SIGKILL to first answered call) vs process floor",
        "restart p50, secured vs open",
    } <= _metrics(out)
    # The steps of both runs, the secured one's with its issuer's part of the connect.
    secured, _, open_ = out.partition("\nopen: steps of 2 restarts")
    assert "secured: steps of 2 restarts" in secured
    assert "issuer.callout" in secured
    assert "issuer.replied" in secured
    assert "connected" in open_
    assert "issuer." not in open_


def test_the_metrics_benchmark_has_an_a_a_mode() -> None:
    """``--aa``: the metrics rows with metrics on in both arms, the noise floor the docs quote
    (docs/observability.md, "What it costs"); every row printed, every paced cast handled
    (whether the rate was sustained depends on the machine's load: not checked)."""
    out = _bench("benchmarks.bench_metrics", "--aa", "-n", "200", "--rounds", "2")
    assert out.startswith("A/A: metrics on in both arms"), out
    assert {
        "cast throughput, metrics on vs off",
        "receiver CPU per cast, metrics on vs off",
        "call p50, metrics on vs off",
    } <= _metrics(out)
    assert "every turn handled in full" in out
