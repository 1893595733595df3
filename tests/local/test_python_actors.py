"""Python actors under rebeam run: the README's demo, crash reasons from the runtime, and
a start that fails in init."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.local.conftest import StartRun, supervisor

ROOT = Path(__file__).parents[2]


def test_the_readme_demo_finishes_by_itself_with_exit_zero(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "rebeam"), "run", "examples/demo/app.yaml",
         "--plain", "--namespace", "demo-test", "--events", str(tmp_path / "events.jsonl")],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        env={**__import__("os").environ, "XDG_STATE_HOME": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "hello/driver | Hello, Maya!" in out
    assert "counter went down (crash (RuntimeError: crashing on purpose" in out
    assert "counter is back as demo-test." in out
    assert "counting from scratch: 1" in out
    assert "hello shut down: significant child driver exited (normal)" in result.stderr


def write_actor(tmp: Path, source: str) -> None:
    (tmp / "myactors.py").write_text(source)


def test_an_exception_in_init_is_a_failed_start_with_its_reason(
    rebeam_run: StartRun, tmp_path: Path
) -> None:
    write_actor(
        tmp_path,
        "import rebeam\n"
        "class Broken(rebeam.Actor):\n"
        "    async def init(self, args):\n"
        "        raise ConnectionError('database is down')\n",
    )
    run = rebeam_run(supervisor("s", "    - {name: w, actor: {module: 'myactors:Broken'}}\n"))
    assert run.exit_code() == 1
    failed = run.events.wait("start_failed", "w")
    crash = failed["reason"]["crash"]
    assert crash["exception_type"] == "ConnectionError"
    assert crash["message"] == "database is down"
    assert "s failed to start: child w: crash (ConnectionError: database is down)" in run.stderr()


@pytest.mark.parametrize("extra", [(), ("--no-prefork",)], ids=["forked", "spawned"])
def test_a_crash_in_a_callback_is_the_exit_reason(
    rebeam_run: StartRun, tmp_path: Path, extra: tuple[str, ...]
) -> None:
    write_actor(
        tmp_path,
        "import rebeam\n"
        "class Fragile(rebeam.Actor):\n"
        "    async def init(self, args):\n"
        "        self.send_after(0, 'boom')\n"
        "    async def handle_info(self, msg):\n"
        "        raise ValueError(f'bad {msg}')\n",
    )
    run = rebeam_run(
        supervisor("s", "    - {name: w, actor: {module: 'myactors:Fragile'}}\n", intensity=0),
        *extra,
    )
    exited = run.events.wait("exited", "w")
    assert exited["reason"]["crash"]["exception_type"] == "ValueError"
    assert exited["reason"]["crash"]["message"] == "bad boom"
    assert "Traceback" in exited["reason"]["crash"]["traceback"]
    assert run.exit_code() == 1


def test_a_slow_init_past_start_timeout_is_a_failed_start(
    rebeam_run: StartRun, tmp_path: Path
) -> None:
    write_actor(
        tmp_path,
        "import asyncio, rebeam\n"
        "class Slow(rebeam.Actor):\n"
        "    async def init(self, args):\n"
        "        await asyncio.sleep(300)\n",
    )
    children = "    - {name: w, startTimeout: 2s, actor: {module: 'myactors:Slow'}}\n"
    run = rebeam_run(supervisor("s", children))
    failed = run.events.wait("start_failed", "w")
    assert failed["reason"]["crash"]["exception_type"] == "StartTimeout"
    assert run.exit_code() == 1


def test_the_manifests_mailbox_bounds_reach_the_actor(rebeam_run: StartRun, tmp_path: Path) -> None:
    write_actor(
        tmp_path,
        "import rebeam\n"
        "class Bounded(rebeam.Actor):\n"
        "    async def init(self, args):\n"
        "        limits = self.node.limits\n"
        "        print(f'limits {limits.max_messages} {limits.max_bytes}', flush=True)\n",
    )
    children = (
        "    - name: w\n"
        "      actor:\n"
        "        module: 'myactors:Bounded'\n"
        "        mailbox: {maxMessages: 7, maxBytes: 4096}\n"
    )
    run = rebeam_run(supervisor("s", children))
    run.events.wait("started", "w")
    run.signal(signal.SIGTERM)
    assert run.exit_code() == 0
    assert "s/w | limits 7 4096" in run.stdout()
