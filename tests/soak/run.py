"""One ``rebeam run`` of the bank, as a user starts it: its own process (stopped by its pid),
its private nats-server with security on, its state under the soak's work directory."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.soak.manifest import APP, Bank, manifest

REBEAM = str(Path(sys.executable).parent / "rebeam")


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: no orphaned tree if the soak dies


@dataclass
class BankRun:
    workdir: Path
    namespace: str
    process: subprocess.Popen[bytes]

    @property
    def data(self) -> Path:
        return self.workdir / "data"

    @property
    def events(self) -> Path:
        return self.workdir / "events.jsonl"

    @classmethod
    def start(
        cls, workdir: Path, bank: Bank, namespace: str, nats: tuple[str, Path] | None = None
    ) -> BankRun:
        """``nats``: the URL of a server not the run's own, and its issuer's secrets."""
        (workdir / "data").mkdir(parents=True)
        app = workdir / "bank.yaml"
        app.write_text(manifest(bank, workdir / "data"))
        env = dict(os.environ, XDG_STATE_HOME=str(workdir / "state"), PYTHONPATH=str(APP))
        env.pop("REBEAM_CREDENTIALS", None)
        external = ["--nats", nats[0], "--issuer", str(nats[1])] if nats else []
        with open(workdir / "rebeam-run.log", "wb") as log:
            process = subprocess.Popen(
                [REBEAM, "run", str(app), "--quiet", "--namespace", namespace,
                 "--events", str(workdir / "events.jsonl"), *external],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, cwd=workdir, preexec_fn=_die_with_parent,
            )  # fmt: skip
        return cls(workdir, namespace, process)

    def instance(self) -> dict[str, Any] | None:
        """The run's instance file (its NATS URL, the owner's credential, the server's
        pid), once written; rewritten when the keeper restarts the server."""
        runs = self.workdir / "state" / "rebeam" / "runs"
        for path in runs.glob(f"{self.namespace}.*.json"):
            try:
                info: dict[str, Any] = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if info.get("pid") == self.process.pid:
                return info
        return None

    def nats_pid(self) -> int | None:
        info = self.instance()
        return info.get("nats_pid") if info else None

    def wait_instance(self, deadline: float) -> dict[str, Any]:
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rebeam run ended at start:\n{self.log()}")
            info = self.instance()
            if info is not None:
                return info
            time.sleep(0.05)
        raise TimeoutError(f"rebeam run wrote no instance file in time:\n{self.log()}")

    def ended(self) -> bool:
        return self.process.poll() is not None

    def log(self) -> str:
        return (self.workdir / "rebeam-run.log").read_text(errors="replace")[-4000:]

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM, as Ctrl-C would; its exit code, or None if it had to be killed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None
