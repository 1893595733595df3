"""The soak's report: markdown tables of throughput, latency and recovery per phase, the
invariants, the restart times after kills, and the RSS of every process of the run."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from tests.soak import journal_files
from tests.soak.check import Findings
from tests.soak.orphans import Orphan
from tests.soak.soak import Phase, Result

RECOVERED = 0.8  # a second's throughput back to this share of the baseline's
MIB = 1024 * 1024


def render(result: Result) -> str:
    baseline = _rate(result.acks, result.phases[0]) if result.phases else 0.0
    out = [
        f"# Soak report ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"{result.bank.accounts} accounts x {result.bank.initial}, {result.bank.tellers} "
        f"tellers at {result.bank.rate:g} transfers/s each; {result.findings.acknowledged} "
        f"transfers acknowledged, {result.findings.transfers} applied, "
        f"{result.findings.declined} declined (not enough money); "
        f"{result.findings.audits} complete audits; drained in {result.drained_in:.1f}s; "
        f"`{result.backend}` exit code {result.exit_code}; the process table looked at "
        f"{result.observer.samples} times, at most {result.observer.longest_gap:.2f}s apart.",
        *(f"{note[0].upper()}{note[1:]}." for note in result.notes),
        "",
        "| phase | seconds | transfers/s | call p50 ms | call p99 ms | faults | recovery s |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, phase in enumerate(result.phases):
        rate, p50, p99, injected = phase_figures(result, phase)
        recovery = ""
        if phase.faults and i + 1 < len(result.phases):
            recovery = _recovery(result.acks, phase, result.phases[i + 1], baseline)
        out.append(
            f"| {phase.name} | {phase.end - phase.start:.0f} | "
            f"{rate:.1f} | {p50} | {p99} | {injected} | {recovery} |"
        )
    out += ["", *_invariants(result), "", *_restarts(result), "", *_memory(result)]
    return "\n".join(out) + "\n"


def phase_figures(result: Result, phase: Phase) -> tuple[float, str, str, int]:
    """Acknowledged transfers a second, call p50 and p99 in ms, faults injected."""
    calls = sorted(
        a["t1"] - a["t0"] for a in result.acks
        if a["via"] == "call" and phase.start <= a["t1"] < phase.end
    )  # fmt: skip
    injected = sum(1 for t, _, _ in result.log.entries if phase.start <= t < phase.end)
    return _rate(result.acks, phase), _ms(calls, 0.5), _ms(calls, 0.99), injected


def _rate(acks: list[dict[str, Any]], phase: Phase) -> float:
    n = sum(1 for a in acks if phase.start <= a["t1"] < phase.end)
    return n / max(phase.end - phase.start, 1e-9)


def _ms(values: list[float], q: float) -> str:
    if not values:
        return "-"
    return f"{values[min(len(values) - 1, math.ceil(q * len(values)) - 1)] * 1000:.1f}"


def _recovery(acks: list[dict[str, Any]], fault: Phase, after: Phase, baseline: float) -> str:
    """Seconds from the fault's end to the first whole second of the quiet phase after it
    whose throughput is back to RECOVERED of the baseline's."""
    second = after.start
    while second + 1 <= after.end:
        n = sum(1 for a in acks if second <= a["t1"] < second + 1)
        if n >= RECOVERED * baseline:
            return f"{second - fault.end:.0f}"
        second += 1
    return "not within the phase"


def _invariants(result: Result) -> list[str]:
    f: Findings = result.findings
    rows = [
        ("total at the end (journals / accounts)", f"{f.final_total} / {f.live_total}",
         f"{f.expected_total}"),
        *((kind, str(f.count(kind)), "0") for kind in (*Findings.KINDS, *f.more_kinds)),
        ("orphan processes after the run", str(len(result.orphans)), "0"),
    ]  # fmt: skip
    lines = ["| invariant | found | must be |", "|---|---|---|"]
    lines += [f"| {name} | {found} | {must} |" for name, found, must in rows]
    for kind, details in f.problems.items():
        lines += ["", f"{kind}: " + "; ".join(details[:5])]
    return lines + orphan_lines(result.orphans)


def orphan_lines(orphans: list[Orphan]) -> list[str]:
    """Each orphan as it was found: a pid alone says nothing once the run is gone."""
    if not orphans:
        return []
    lines = ["", "Orphan processes (alive after the run, as found then):", ""]
    return lines + [f"* {orphan.describe()}" for orphan in orphans]


def _restarts(result: Result) -> list[str]:
    """From each SIGKILL of a child to its next incarnation's started event."""
    starts: dict[str, list[float]] = {}
    for event in result.observer.lifecycle:
        if event["event"] == "started" and event.get("child"):
            when = datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp()
            starts.setdefault(event["child"], []).append(when)
    what = "the next incarnation's started event"
    if not starts:  # a backend without lifecycle events (Ray): the incarnations' own records
        what = "the next incarnation's birth record"
        scratch = Findings(result.bank.total)  # damage was counted once, by the checker
        for birth in journal_files.records(result.workdir / "data" / "births.jsonl", scratch):
            starts.setdefault(birth["path"], []).append(birth["t"])
    gaps = []
    for t, fault, target in result.log.entries:
        if fault == "kill":
            child = target.split(" ")[0]
            later = [s for s in starts.get(child, []) if s > t]
            if later:
                gaps.append(min(later) - t)
    gaps.sort()
    if not gaps:
        return ["No child was killed."]
    return [
        f"Restart after SIGKILL ({len(gaps)} kills, to {what}): "
        f"p50 {_ms(gaps, 0.5)} ms, p99 {_ms(gaps, 0.99)} ms, max {gaps[-1] * 1000:.0f} ms."
    ]


def _memory(result: Result) -> list[str]:
    overload = next((p for p in result.phases if p.name == "overload"), None)
    series: dict[str, list[tuple[float, int, int]]] = {}
    for t, label, os_pid, size in result.observer.rss:
        series.setdefault(label, []).append((t, os_pid, size))
    lines = [
        "| process | RSS first MiB | peak MiB | last MiB | slope under overload MiB/min |",
        "|---|---|---|---|---|",
    ]
    for label in sorted(series):
        points = series[label]
        sizes = [s for _, _, s in points]
        slope = _slope(points, overload) if overload else None
        lines.append(
            f"| {label} | {sizes[0] / MIB:.1f} | {max(sizes) / MIB:.1f} | "
            f"{sizes[-1] / MIB:.1f} | {'-' if slope is None else f'{slope:+.2f}'} |"
        )
    return lines


def _slope(points: list[tuple[float, int, int]], phase: Phase) -> float | None:
    """Least squares over the phase, for the process of this label seen most in it (a
    killed and restarted child starts small again, which is no slope of either)."""
    inside = [(t, p, s) for t, p, s in points if phase.start <= t < phase.end]
    if not inside:
        return None
    counts: dict[int, int] = {}
    for _, p, _ in inside:
        counts[p] = counts.get(p, 0) + 1
    chosen = max(counts, key=lambda p: counts[p])
    xs = [t for t, p, _ in inside if p == chosen]
    ys = [s / MIB for _, p, s in inside if p == chosen]
    if len(xs) < 3:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return None
    return 60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var
