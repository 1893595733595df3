"""The Kubernetes walkthrough of docs/kubernetes.md ("A dev cluster on your machine"), run as
the docs write it: its ```` ```sh walkthrough ```` block, line by line, in bash, against a
cluster that ``make cluster``'s code (tools/cluster.py) brings up in container mode, with the
exports of its ``env.sh``. Docs and test cannot drift: the commands are read from the doc."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from infra.binaries import REPO
from tests.images.containers import built_images
from tools import cluster as dev_cluster

pytestmark = pytest.mark.e2e

COMMAND_TIMEOUT = 240.0

# What a command's output must show (by the command's first words).
EXPECT = {
    "helm test": "Succeeded",
    "kubectl get supervisors,actors": "supervisor.rebeam.io/hello",
    "kubectl describe supervisor hello": "counter exited",
    "kubectl logs hello-driver-1": "counter is back",
    "kubectl logs -n rebeam-system": "created pod hello-driver-1",
    "rebeam tree": "driver",
}


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """A dev cluster, started and stopped by the code of `make cluster` / `make cluster-stop`,
    with a state directory of its own (never the developer's .cache/cluster)."""
    if dev_cluster.start(tmp_path / "cluster", "containers") != 0:
        pytest.fail("tools/cluster.py start failed (output above)")
    try:
        yield tmp_path / "cluster"
    finally:
        dev_cluster.stop(tmp_path / "cluster")


# The suite's 120 s per test counts the cluster's start too, and the walkthrough is thirteen
# commands in a row, among them an image-based operator installed and uninstalled with
# --wait and the demo run to its end in containers (the doc's own wait allows it 180 s):
# 96 s of commands after a 24 s start ran out of it at load 20. The commands keep their
# own bound each (COMMAND_TIMEOUT); this one covers them in a row.
@pytest.mark.timeout(480)
def test_the_docs_walkthrough_runs_as_written(state_dir: Path) -> None:
    built_images()
    commands = dev_cluster.walkthrough()  # the doc's block, as `make cluster` prints it
    assert commands[0].startswith("kubectl create namespace"), commands
    env_sh = state_dir / "env.sh"
    for command in commands:
        result = subprocess.run(
            ["bash", "-c", f"set -eo pipefail; . {env_sh}; {command}"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        shown = f"$ {command}\n{result.stdout}{result.stderr}"
        assert result.returncode == 0, shown
        for prefix, expected in EXPECT.items():
            if command.startswith(prefix):
                assert expected in result.stdout, shown
    # The stop removes every container the cluster ran.
    dev_cluster.stop(state_dir)
    left = built_images().run(
        "ps", "--all", "--quiet", "--filter=label=io.rebeam.e2e.node", capture=True
    )
    assert not left.stdout.split(), left.stdout
