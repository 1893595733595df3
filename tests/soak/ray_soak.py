"""The peer under the same storm (docs/soak.md, "A peer: Ray"): the bank on Ray actors
(tests/soak/ray_bank.py, run by the benchmark environment's Python), with the same phases,
the same SIGKILLs and SIGSTOPs of the actors' OS processes at the same rates, the same
overload, and the same checker and report."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tests.soak import faults
from tests.soak.check import check
from tests.soak.manifest import APP, Bank
from tests.soak.observer import Observer
from tests.soak.orphans import orphans_of
from tests.soak.run import _die_with_parent
from tests.soak.soak import (
    Phase,
    Result,
    Schedule,
    acks_of,
    run_phases,
    wait_flowing,
)

DRIVER = Path(__file__).parent / "ray_bank.py"
RAY_FAULTS = ("kill", "hang", "overload")
START_DEADLINE = 180.0  # Ray's own processes first, on a busy 2-core machine
STOP_DEADLINE = 60.0


def ray_python() -> Path | None:
    """The benchmark environment's Python with Ray, set up once (benchmarks/__main__.py)."""
    from benchmarks.__main__ import _ensure_ray

    return _ensure_ray()


class RayObserver(Observer):
    """The driver is the head of the family: Ray's GCS, raylet and workers descend from it."""

    def label(self, os_pid: int) -> str:
        if os_pid == self.run_pid:
            return "ray driver"
        if os_pid in self.owners:
            return self.owners[os_pid]
        argv = self.command(os_pid)
        for part in ("gcs_server", "raylet", "log_monitor", "ray::IDLE", "dashboard"):
            if any(part in a for a in argv):
                return part
        return "other"


@dataclass
class RayRun:
    workdir: Path
    process: subprocess.Popen[bytes]

    @property
    def data(self) -> Path:
        return self.workdir / "data"

    @classmethod
    def start(cls, workdir: Path, bank: Bank, python: Path) -> RayRun:
        (workdir / "data").mkdir(parents=True)
        config = {
            "dir": str(workdir / "data"), "accounts": bank.accounts, "tellers": bank.tellers,
            "initial": bank.initial, "rate": bank.rate,
        }  # fmt: skip
        with open(workdir / "ray.log", "wb") as log:
            process = subprocess.Popen(
                [str(python), str(DRIVER), json.dumps(config)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                cwd=workdir, preexec_fn=_die_with_parent,
                env=dict(os.environ, PYTHONPATH=str(APP)),  # the bank's journal, for every worker
            )  # fmt: skip
        return cls(workdir, process)

    def ended(self) -> bool:
        return self.process.poll() is not None

    def log(self) -> str:
        return (self.workdir / "ray.log").read_text(errors="replace")[-4000:]

    def _pipe(self) -> tuple[IO[bytes], IO[bytes]]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        return self.process.stdin, self.process.stdout

    def send(self, command: dict[str, Any]) -> None:
        stdin, _ = self._pipe()
        stdin.write(json.dumps(command).encode() + b"\n")
        stdin.flush()

    def answer(self) -> dict[str, Any]:
        """The driver's next line (blocking: call it in a thread)."""
        _, stdout = self._pipe()
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"the Ray driver ended:\n{self.log()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def stop(self) -> int | None:
        with contextlib.suppress(OSError):  # it ended already
            self.send({"op": "stop"})
        try:
            return self.process.wait(STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            return None


async def ray_soak(
    workdir: Path,
    python: Path,
    bank: Bank | None = None,
    schedule: Schedule | None = None,
    rates: faults.Rates | None = None,
    seed: int = 1,
) -> Result:
    bank, schedule = bank or Bank(), schedule or Schedule(faults=RAY_FAULTS)
    rates = rates or faults.Rates()
    run = RayRun.start(workdir, bank, python)
    observer = RayObserver(run.process.pid, run.data, workdir / "events.jsonl")
    observer.start()
    try:
        ready = await asyncio.wait_for(asyncio.to_thread(run.answer), START_DEADLINE)
        if not ready.get("ready"):
            raise RuntimeError(f"the Ray driver said {ready}:\n{run.log()}")
        await wait_flowing(run, bank, observer, START_DEADLINE)
        phases, log = await _phases(run, bank, schedule, rates, observer, seed)
        run.send({"op": "drain"})
        drained = await asyncio.to_thread(run.answer)
    finally:
        exit_code = await asyncio.to_thread(run.stop)
        observer.sample()
        observer.stop()
    if drained["live_total"] is None:
        raise TimeoutError("the bank on Ray did not drain")
    orphans = orphans_of(observer)
    findings = check(bank, run.data, observer, drained["live_total"])
    return Result(
        bank, phases, findings, observer, log, acks_of(run, bank), orphans,
        exit_code, drained["drained_in"], workdir, backend="ray driver",
    )  # fmt: skip


async def _phases(
    run: RayRun,
    bank: Bank,
    schedule: Schedule,
    rates: faults.Rates,
    observer: Observer,
    seed: int,
) -> tuple[list[Phase], faults.FaultLog]:
    rng = random.Random(seed)
    log = faults.FaultLog()
    targets = [*bank.account_names(), *bank.teller_names(), "auditor"]

    async def set_rate(rate: float) -> None:
        run.send({"op": "rate", "rate": rate})

    makers: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
        "kill": lambda: faults.kill_storm(observer, targets, rates, log, rng),
        "hang": lambda: faults.hangs(observer, targets, rates, log, rng),
        "overload": lambda: faults.overload(set_rate, bank.rate, rates, log),
    }
    return await run_phases(schedule, makers, run), log
