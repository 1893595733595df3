"""The import layering of .importlinter holds: the supervision core and the manifest model
import no backend, and neither backend imports the other (they share neutral modules such as
the management protocol). ``lint-imports`` from this venv checks it; a broken contract fails
here with import-linter's report, which names the import chain."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")

CONTRACTS = (
    "rebeam.spec and rebeam.supervision import no backend",
    "rebeam.local does not import rebeam_operator",
    "rebeam_operator does not import rebeam.local",
)


def lint_imports(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_import_contracts_are_kept() -> None:
    result = lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    for contract in CONTRACTS:
        assert f"{contract} KEPT" in result.stdout, result.stdout


def test_a_broken_contract_fails(tmp_path: Path) -> None:
    """The check does look: the CLI imports rebeam run's modules, so forbidding that fails."""
    config = tmp_path / "broken.ini"
    config.write_text(
        "[importlinter]\nroot_packages =\n    rebeam\n\n"
        "[importlinter:contract:cli]\nname = the CLI imports no local backend\n"
        "type = forbidden\nsource_modules =\n    rebeam.cli\n"
        "forbidden_modules =\n    rebeam.local\n"
    )
    result = lint_imports("--config", str(config))
    assert result.returncode != 0
    assert "the CLI imports no local backend BROKEN" in result.stdout, result.stdout
