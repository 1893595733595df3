"""The chart's CRDs are the generated ones, byte for byte; lint and template are clean."""

from __future__ import annotations

from pathlib import Path

from tests.chart.chart_helpers import CHART, REPO, helm

GENERATED = REPO / "crds"


def test_chart_crds_are_the_generated_crds_byte_for_byte() -> None:
    generated = {p.name: p.read_bytes() for p in GENERATED.glob("*.yaml")}
    in_chart = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert generated, "no CRDs in crds/: run `make crds`"
    assert sorted(in_chart) == sorted(generated), "run scripts/chart-crds.sh"
    for name, content in generated.items():
        assert in_chart[name] == content, (
            f"charts/rebeam/crds/{name} differs: scripts/chart-crds.sh"
        )


def _nats_archive_fetched() -> bool:
    """`helm dependency build charts/rebeam` was run here (it needs network)."""
    return any((CHART / "charts").glob("nats-*.tgz"))


def test_lint_of_the_chart_itself_only_misses_the_nats_archive(helm_home: Path) -> None:
    """The chart as committed: the one warning is the NATS chart, fetched by
    `helm dependency build` where there is network (then there is none)."""
    for values in ([], ["--set", "nats.enabled=false", "--set", "natsUrl=nats://nats:4222"]):
        result = helm("lint", str(CHART), *values, home=helm_home)
        warnings = [line for line in result.stdout.splitlines() if "[WARNING]" in line]
        if _nats_archive_fetched():
            assert warnings == [], result.stdout
        else:
            assert len(warnings) == 1, result.stdout
            assert "missing these dependencies: nats" in warnings[0]
        assert "[ERROR]" not in result.stdout


def test_template_of_the_chart_itself_needs_the_nats_archive(helm_home: Path) -> None:
    """Why the tests render an offline copy: helm 3.22 checks declared dependencies before
    conditions, so even nats.enabled=false needs the archive in charts/."""
    result = helm(
        "template", "rb", str(CHART), "--set", "nats.enabled=false", home=helm_home, check=False
    )
    if _nats_archive_fetched():
        return  # nothing to show: the archive is there
    assert result.returncode != 0
    assert "missing in charts/ directory: nats" in result.stderr


def test_lint_strict_is_clean_in_every_mode(chart: Path, helm_home: Path) -> None:
    modes = [
        [],
        ["nats.enabled=false", "natsUrl=nats://nats.example:4222"],
        [
            "operator.watchNamespaces={team-a,team-b}",
            "networkPolicy.actors.ingress[0].ports[0].port=9090",
        ],
        ["networkPolicy.enabled=false"],
        [
            "admissionPolicy.enabled=true",
            "admissionPolicy.allowedImagePrefixes={registry.example/}",
        ],
        ["serviceAccount.create=false", "serviceAccount.name=existing", "rbac.create=false"],
    ]
    for sets in modes:
        args = [a for s in sets for a in ("--set", s)]
        result = helm("lint", "--strict", str(chart), *args, home=helm_home)
        assert "0 chart(s) failed" in result.stdout, result.stdout
        assert "[WARNING]" not in result.stdout, result.stdout
        assert "[ERROR]" not in result.stdout, result.stdout
