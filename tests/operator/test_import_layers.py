"""The operator's modules are layered (the ``.importlinter`` contract "operator modules form no
cycle"): each imports only modules below it, so their imports have no cycle. This runs
``lint-imports`` as a developer would, and checks that the contract names every module, so a
new one cannot slip past it."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
SECTION = "importlinter:contract:operator-layers"


def lint_imports(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), str(config), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def layers() -> list[list[str]]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / ".importlinter")
    lines = parser[SECTION]["layers"].strip().splitlines()
    return [[m.strip() for m in line.split("|")] for line in lines]


def test_the_contract_holds() -> None:
    run = lint_imports(ROOT / ".importlinter")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "operator modules form no cycle KEPT" in run.stdout


def test_the_contract_names_every_operator_module() -> None:
    named = {m for layer in layers() for m in layer}
    modules = {
        f"rebeam_operator.{p.stem}"
        for p in (ROOT / "operator" / "rebeam_operator").glob("*.py")
        if p.stem != "__init__"
    }
    assert modules - named == set(), "add the new module to its layer in .importlinter"
    assert named - modules == set(), "the contract names a module that is gone"


def test_a_broken_layering_fails(tmp_path: Path) -> None:
    """The check bites: the same contract with the driver put below the modules it uses."""
    order = layers()
    driver = order.index(["rebeam_operator.driver"])
    order.append(order.pop(driver))
    broken = tmp_path / "importlinter.ini"
    body = "\n".join("    " + " | ".join(layer) for layer in order)
    broken.write_text(
        "[importlinter]\nroot_package = rebeam_operator\n\n"
        f"[{SECTION}]\nname = operator modules form no cycle\ntype = layers\n"
        f"layers =\n{body}\n"
    )
    run = lint_imports(broken)
    assert run.returncode != 0, run.stdout
    assert "BROKEN" in run.stdout
