"""The package as users get it: the sdist and the wheel ``python -m build`` makes, the wheel
installed into a fresh venv (its dependencies from the package index), and that install
used as a user would — ``rebeam --version``, ``rebeam validate``, a tiny tree run to its
end — and type-checked: a user project subclassing ``rebeam.Actor`` passes ``mypy --strict``
against the installed wheel (``py.typed`` is in it).

One build and one venv per session, in pytest's temporary folders: nothing is left in the
repository. The build runs from a copy of the repository's files, so setuptools' own build
folders land there too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[2]
SLOW = 600  # seconds: a cold pip cache downloads every dependency

TINY = """\
from __future__ import annotations

from typing import Any

import rebeam


class Tiny(rebeam.Actor):
    async def init(self, args: Any) -> None:
        self.send_after(0, "done")

    async def handle_info(self, message: Any) -> None:
        print(f"{self.pid}: {message}")
        self.stop()
"""

TREE = """\
apiVersion: rebeam.io/v1alpha1
kind: Supervisor
metadata: {name: tiny}
spec:
  autoShutdown: any_significant
  children:
    - name: once
      restart: transient
      significant: true
      actor: {module: 'tiny:Tiny'}
"""

# What a user's project looks like to the type checker: actors and a client.
USER_PROJECT = """\
from __future__ import annotations

import rebeam


class Counter(rebeam.Actor):
    count: int

    async def init(self, args: object) -> None:
        self.count = 0

    async def handle_call(self, message: object, from_: rebeam.From) -> int:
        self.count += 1
        return self.count

    async def handle_info(self, message: object) -> None:
        if isinstance(message, rebeam.Down):
            print(message.reason)


async def ask(url: str) -> object:
    async with rebeam.connect(url, namespace="default"):
        pid: rebeam.Pid | None = await rebeam.whereis("counter")
        return await rebeam.call(pid or "counter", "incr", timeout=1.0)
"""


@dataclass(frozen=True)
class Installed:
    wheel: Path
    sdist: Path
    bin: Path  # the fresh venv's bin folder

    def run(self, *argv: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REBEAM_", "PYTHON"))}
        return subprocess.run(
            [str(self.bin / argv[0]), *argv[1:]],
            capture_output=True,
            text=True,
            cwd=cwd,
            env=dict(env, XDG_STATE_HOME=str(cwd / "state")),
            timeout=timeout,
            check=False,
        )


def _source_copy(into: Path) -> Path:
    """The repository's files (tracked, and new ones not ignored), without .git or venvs."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = ROOT / name.decode()
        if source.is_file():
            target = into / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return into


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("packaging")
    source = _source_copy(work / "source")
    dist = work / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(dist), str(source)],
        capture_output=True,
        check=True,
        timeout=SLOW,
    )
    (wheel,) = dist.glob("rebeam-*.whl")
    (sdist,) = dist.glob("rebeam-*.tar.gz")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=SLOW)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        capture_output=True,
        check=True,
        timeout=SLOW,
    )
    return Installed(wheel, sdist, venv / "bin")


def test_the_wheel_ships_py_typed_and_the_sdist_the_sources(installed: Installed) -> None:
    names = zipfile.ZipFile(installed.wheel).namelist()
    assert "rebeam/py.typed" in names
    assert "rebeam/cli/__init__.py" in names
    assert not [n for n in names if n.startswith(("tests/", "examples/"))]
    listing = subprocess.run(
        ["tar", "-tzf", str(installed.sdist)], capture_output=True, text=True, check=True
    ).stdout
    assert "/sdk/rebeam/py.typed" in listing


def test_version_is_the_projects(installed: Installed, tmp_path: Path) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    result = installed.run("rebeam", "--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"rebeam {version}"


def test_validate_and_a_tiny_tree_from_the_wheel(installed: Installed, tmp_path: Path) -> None:
    (tmp_path / "tiny.py").write_text(TINY)
    (tmp_path / "tree.yaml").write_text(TREE)
    checked = installed.run("rebeam", "validate", "tree.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == "Supervisor/tiny: ok (one_for_one, 1 actor)"

    ran = installed.run("rebeam", "run", "tree.yaml", "--plain", cwd=tmp_path, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert "tiny/once | " in ran.stdout, ran.stdout
    assert ran.stderr.splitlines()[-1] == (
        "rebeam: tiny shut down: significant child once exited (normal)"
    )


def test_a_user_project_passes_mypy_strict_against_the_installed_wheel(
    installed: Installed, tmp_path: Path
) -> None:
    (tmp_path / "project.py").write_text(USER_PROJECT)
    mypy = Path(sys.executable).parent / "mypy"
    result = subprocess.run(
        [str(mypy), "--strict", "--no-incremental", "--python-executable",
         str(installed.bin / "python"), "project.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the repository: its mypy settings and sources stay out of it
        timeout=SLOW,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
