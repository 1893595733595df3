"""The soak's two runs side by side, rebeam's and a peer's (docs/soak.md, "A peer: Ray"):
the same columns per phase, then what broke."""

from __future__ import annotations

from tests.soak.report import phase_figures
from tests.soak.soak import Result


def side_by_side(ours: Result, peer: Result, name: str) -> str:
    out = [
        f"| phase | transfers/s rebeam | {name} | call p50 ms rebeam | {name} "
        f"| call p99 ms rebeam | {name} | faults rebeam | {name} |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for a, b in zip(ours.phases, peer.phases, strict=False):
        rate_a, p50_a, p99_a, n_a = phase_figures(ours, a)
        rate_b, p50_b, p99_b, n_b = phase_figures(peer, b)
        out.append(
            f"| {a.name} | {rate_a:.1f} | {rate_b:.1f} | {p50_a} | {p50_b} | {p99_a} | {p99_b} "
            f"| {n_a} | {n_b} |"
        )
    out += ["", f"| | rebeam | {name} |", "|---|---|---|"]
    for kind in ("acknowledged transfer lost", "applied twice"):
        out.append(f"| {kind} | {ours.findings.count(kind)} | {peer.findings.count(kind)} |")
    out.append(
        f"| invariant violations (all) | {ours.findings.violations + len(ours.orphans)} "
        f"| {peer.findings.violations + len(peer.orphans)} |"
    )
    return "\n".join(out) + "\n"
