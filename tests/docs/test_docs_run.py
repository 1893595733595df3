"""Docs that run: every block of README.md and docs/*.md marked runnable is run here, and
every manifest in examples/ is validated, the small ones run. A doc example can never again
fail as written. The markers (README, "Docs that run"):

* ```` ```python run ````: a program; run with this interpreter against a running, secured
  ``rebeam run`` of the fixture tree below ($REBEAM_NATS_URL, $REBEAM_NAMESPACE); it must
  exit 0.
* ```` ```sh run ````: every line is a ``rebeam`` command (a ``# comment`` after it is
  dropped), run from the repository's root against the same tree; each must exit 0.
* ```` ```LANG file=PATH ````: the block is the file PATH of this repository, exactly; the
  examples it names are run below.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.local.conftest import DEADLINE, REBEAM, wait_until

Completed = subprocess.CompletedProcess[str]
ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = ROOT / "examples"
FENCE = re.compile(r"^```(\w+)[ \t]+(run|file=\S+)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)

# The tree runnable blocks talk to: the demo's greeter and counter (registered as such, no
# driver to end it) and examples/jobs.yaml (a simple_one_for_one supervisor `jobs`).
FIXTURE = """\
apiVersion: rebeam.io/v1alpha1
kind: Supervisor
metadata: {name: hello}
spec:
  children:
    - name: greeter
      actor: {module: hello.greeter:Greeter, register: greeter}
    - name: counter
      actor: {module: hello.counter:Counter, register: counter}
"""


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    language: str
    marker: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def blocks() -> list[Block]:
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append(Block(doc.name, line, *match.groups()))
    return found


BLOCKS = blocks()


@dataclass
class Tree:
    url: str
    env: dict[str, str]  # what a command needs to find the tree: its namespace

    @property
    def program_env(self) -> dict[str, str]:
        """A program's: also the URL (for the CLI, --nats means "not this run's NATS")."""
        return dict(self.env, REBEAM_NATS_URL=self.url)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tree]:
    """A secured `rebeam run` (its private nats-server) of FIXTURE and examples/jobs.yaml."""
    tmp = tmp_path_factory.mktemp("docs")
    manifest = tmp / "hello.yaml"
    manifest.write_text(FIXTURE)
    namespace = f"t{os.getpid()}-docs"
    env = dict(
        os.environ,
        XDG_STATE_HOME=str(tmp / "state"),
        PYTHONPATH=str(EXAMPLES / "demo"),
        REBEAM_NAMESPACE=namespace,
    )
    env.pop("REBEAM_CREDENTIALS", None)
    env.pop("REBEAM_NATS_URL", None)
    process = subprocess.Popen(
        [REBEAM, "run", str(manifest), str(EXAMPLES / "jobs.yaml"), "--plain"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp,
    )
    try:
        runs = tmp / "state" / "rebeam" / "runs"  # one instance file per run
        wait_until(
            lambda: any(runs.glob(f"{namespace}.*.json")), what="the fixture tree's instance file"
        )
        url = json.loads(next(runs.glob(f"{namespace}.*.json")).read_text())["nats_url"]
        # The blocks talk to its actors by name: wait for the whole tree to have started (a
        # tree request waits for a starting supervisor), not only for the run to exist.
        wait_until(
            lambda: (
                subprocess.run(
                    [REBEAM, "tree", "--json"], capture_output=True, env=env, cwd=tmp, check=False
                ).returncode
                == 0
            ),
            what="the fixture trees to have started",
        )
        yield Tree(url, env)
    finally:
        stop(process)


def test_the_docs_have_runnable_blocks() -> None:
    """The markers are in use (a typo in the pattern would make every test below vanish)."""
    kinds = {(b.language, b.marker.split("=")[0]) for b in BLOCKS}
    assert {("python", "run"), ("sh", "run"), ("python", "file"), ("yaml", "file")} <= kinds


@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if b.marker.startswith("file=")], ids=lambda b: b.id
)
def test_a_file_block_is_the_file(block: Block) -> None:
    path = ROOT / block.marker.removeprefix("file=")
    assert path.is_file(), f"{block.id} names {path}, which does not exist"
    assert block.text == path.read_text(), f"{block.id} differs from {path}"


@pytest.mark.nats
@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if (b.language, b.marker) == ("python", "run")], ids=lambda b: b.id
)
def test_a_python_block_runs(block: Block, tree: Tree, tmp_path: Path) -> None:
    program = tmp_path / "block.py"
    program.write_text(block.text)
    result = run_block_command([sys.executable, str(program)], tree.program_env, tmp_path)
    assert result.returncode == 0, f"{block.id}:\n{result.stdout}\n{result.stderr}"


def run_block_command(argv: list[str], env: dict[str, str], cwd: Path) -> Completed:
    return subprocess.run(
        argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=DEADLINE * 2, check=False
    )


@pytest.mark.nats
@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if (b.language, b.marker) == ("sh", "run")], ids=lambda b: b.id
)
def test_a_shell_block_runs(block: Block, tree: Tree) -> None:
    for line in block.text.splitlines():
        argv = shlex.split(line, comments=True)
        if not argv:
            continue
        assert argv[0] == "rebeam", f"{block.id}: only rebeam commands run here: {line}"
        result = run_block_command([REBEAM, *argv[1:]], tree.env, ROOT)
        assert result.returncode == 0, f"{block.id}: {line}\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize("manifest", sorted(EXAMPLES.rglob("*.yaml")), ids=lambda p: p.name)
def test_every_example_is_valid(manifest: Path) -> None:
    result = subprocess.run(
        [REBEAM, "validate", str(manifest)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def run_example(tmp_path: Path, *manifests: str) -> subprocess.Popen[str]:
    """`rebeam run` of examples, from a folder of the test's (their files land there)."""
    return subprocess.Popen(
        [REBEAM, "run", *(str(EXAMPLES / m) for m in manifests), "--plain",
         "--namespace", f"t{os.getpid()}-ex", "--events", str(tmp_path / "events.jsonl")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state")),
        cwd=tmp_path,
    )  # fmt: skip


def events_of(tmp_path: Path) -> list[dict[str, object]]:
    path = tmp_path / "events.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.endswith("}")]


def wait_event(tmp_path: Path, event: str, child: str) -> None:
    wait_until(
        lambda: any(e["event"] == event and e.get("child") == child for e in events_of(tmp_path)),
        what=f"{event} {child}",
    )


def stop(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    """Ctrl-C, as its user would; the exit code and what it printed."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        out, err = process.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    return process.returncode, out, err


def test_the_demo_example_runs_to_its_end(tmp_path: Path) -> None:
    process = run_example(tmp_path, "demo/app.yaml")
    code = process.wait(DEADLINE * 2)
    assert code == 0, stop(process)


def test_the_pipeline_example_stores_what_it_fetched(tmp_path: Path) -> None:
    process = run_example(tmp_path, "pipeline.yaml")
    try:
        wait_event(tmp_path, "exited", "fetcher")
    finally:
        code, out, err = stop(process)
    assert code == 0, err
    assert "pipeline/fetcher | batch 3: stored 3 rows" in out, out
    fetcher = [e for e in events_of(tmp_path) if e.get("child") == "fetcher"]
    assert fetcher[-1]["reason"] == "normal", fetcher


def test_the_jobs_and_nested_examples_run_together(tmp_path: Path) -> None:
    process = run_example(tmp_path, "jobs.yaml", "nested.yaml")
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))
    ns = ["--namespace", f"t{os.getpid()}-ex"]
    try:
        wait_event(tmp_path, "started", "web")
        started = time.monotonic()
        for argv in (
            ["start-child", "jobs", '{"url": "https://example.com"}'],
            ["call", "cache", '{"put": "a", "value": 1}'],
            ["call", "db-pool", '"size?"'],
        ):
            result = subprocess.run(
                [REBEAM, *argv, *ns], capture_output=True, text=True, env=env, check=False
            )
            assert result.returncode == 0, (argv, result.stderr)
        wait_event(tmp_path, "exited", "job-1")
        assert time.monotonic() - started < DEADLINE
    finally:
        code, out, err = stop(process)
    assert code == 0, err
    assert "fetched https://example.com" in out, out
