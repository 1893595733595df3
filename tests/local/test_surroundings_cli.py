"""Every command that needs NATS and cannot reach it says so in one line naming the URL,
within a few seconds: no hang, no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.local.conftest import REBEAM

FAST = 8.0  # what "within a few seconds" means for a command that cannot reach NATS
REFUSED = "connection refused (is the server running?)"


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nobody listens on (bound, never listened: connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


COMMANDS = [
    ("tree",),
    ("events",),
    ("call", "counter", "{}"),
    ("cast", "counter", "{}"),
    ("send", "counter", "{}"),
    ("terminate-child", "app/idle"),
    ("restart-child", "app/idle"),
    ("delete-child", "app/idle"),
    ("start-child", "app", "{}"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_a_command_against_an_unreachable_nats_fails_fast_in_one_line(
    command: tuple[str, ...], closed_port: int, tmp_path: Path
) -> None:
    url = f"nats://127.0.0.1:{closed_port}"
    asked = time.monotonic()
    result = subprocess.run(
        [REBEAM, *command, "--nats", url, "--namespace", "nowhere"],
        capture_output=True,
        text=True,
        timeout=FAST + 5,
        env=dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state")),
        check=False,
    )
    assert time.monotonic() - asked < FAST
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"rebeam: cannot reach NATS at {url}: {REFUSED}"]
