"""Watches a running bank from outside, in a thread: which OS process is which child (from
the incarnations' own birth records and from rebeam's lifecycle events), whether any child
ever has two live processes at once, and the RSS of every process of the run over time
(measured every RSS_EVERY seconds by a process of its own, tests/soak/rss_sampler.py: this
thread shares the GIL with the rest of the soak's process, and may be late)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from tests.soak import procs
from tests.soak.run import _die_with_parent

SAMPLE = 0.05  # seconds between looks at the process table
RSS_EVERY = 0.5
SAMPLER_START = 30.0  # seconds for the sampler's first line: a Python start on a busy machine
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Overlap:
    t: float
    path: str
    os_pids: list[int]


@dataclass
class TailedFile:
    """The whole lines of a JSON-lines file that another process appends to."""

    path: Path
    offset: int = 0

    def new(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        whole = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(whole)
        return [json.loads(line) for line in whole.splitlines() if line]


@dataclass
class Observer:
    # procs.family's marker: which of run_pid's descendants, with theirs, are the bank's.
    family_marker: ClassVar[str | None] = None

    run_pid: int
    data: Path
    events: Path
    owners: dict[int, str] = field(default_factory=dict)  # os pid -> child path
    latest: dict[str, int] = field(default_factory=dict)  # child path -> newest os pid
    seen: dict[int, int | None] = field(default_factory=dict)  # every process, its start
    overlaps: list[Overlap] = field(default_factory=list)
    rss: list[tuple[float, str, int, int]] = field(default_factory=list)  # t, label, pid, B
    lifecycle: list[dict[str, Any]] = field(default_factory=list)
    commands: dict[int, list[str]] = field(default_factory=dict)  # os pid -> argv, as sampled
    samples: int = 0
    longest_gap: float = 0.0  # seconds between two looks at the process table, at most
    failure: BaseException | None = None

    def __post_init__(self) -> None:
        self._births = TailedFile(self.data / "births.jsonl")
        self._events = TailedFile(self.events)
        self._rss_file = TailedFile(self.events.with_name("rss.jsonl"))
        self._sampler: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="soak-observer", daemon=True)

    def start(self) -> None:
        """Start the RSS sampler, and this thread once the sampler runs."""
        args = [sys.executable, "-m", "tests.soak.rss_sampler", str(self.run_pid)]
        args += [str(RSS_EVERY), str(self._rss_file.path)]
        args += ["--with-root"] if self.run_pid in self.heads() else []
        args += ["--marker", self.family_marker] if self.family_marker else []
        path = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
        self._sampler = subprocess.Popen(
            args, env={**os.environ, "PYTHONPATH": path}, preexec_fn=_die_with_parent
        )
        deadline = time.monotonic() + SAMPLER_START
        while not self._rss_file.path.exists() or not self._rss_file.path.stat().st_size:
            if self._sampler.poll() is not None or time.monotonic() > deadline:
                self._stop_sampler()
                raise RuntimeError(f"the RSS sampler did not start: {args}")
            time.sleep(0.02)
        self._thread.start()

    def stop(self) -> None:
        """Stop the sampler (by its pid) and this thread; take in the last samples."""
        self._stop_sampler()
        self._stop.set()
        if self._thread.ident is not None:  # started (a failed start stops too)
            self._thread.join(10)
        self._learn()
        self._take_rss()

    def _stop_sampler(self) -> None:
        sampler, self._sampler = self._sampler, None
        if sampler is not None and sampler.poll() is None:
            sampler.terminate()
            try:
                sampler.wait(10)
            except subprocess.TimeoutExpired:
                sampler.kill()
                sampler.wait()

    def current(self, path: str) -> int | None:
        with self._lock:
            os_pid = self.latest.get(path)
        return os_pid if os_pid is not None and procs.alive(os_pid) else None

    def _loop(self) -> None:
        last = time.monotonic()
        try:
            while not self._stop.wait(SAMPLE):
                self.longest_gap = max(self.longest_gap, time.monotonic() - last)
                last = time.monotonic()
                self.sample()
        except BaseException as exc:  # a blind observer must fail the soak, not go quiet
            self.failure = exc
            raise

    def sample(self) -> None:
        self._learn()
        self._take_rss()
        now = time.time()
        family = self.family()
        for os_pid in family:
            if os_pid not in self.seen:
                self.seen[os_pid] = procs.start_time(os_pid)
        live: dict[str, list[int]] = {}
        for os_pid in family:
            path = self.owners.get(os_pid)
            if path is not None and procs.alive(os_pid):
                live.setdefault(path, []).append(os_pid)
        for path, pids in live.items():
            if len(pids) > 1:
                self.overlaps.append(Overlap(now, path, sorted(pids)))
        self.samples += 1

    def _take_rss(self) -> None:
        """The sampler's new lines: commands first seen, then sizes, labelled now (the
        births that name a process come in before its sizes are taken in)."""
        with self._lock:
            for line in self._rss_file.new():
                if "argv" in line:
                    self.commands[line["pid"]] = line["argv"]
                elif "rss" in line:
                    os_pid = line["pid"]
                    self.rss.append((line["t"], self.label(os_pid), os_pid, line["rss"]))

    def heads(self) -> list[int]:
        """Processes measured but not of the bank's family: ``rebeam run`` itself."""
        return [self.run_pid]

    def family(self) -> list[int]:
        """Every process of the bank now: what is checked for overlaps and orphans."""
        return procs.family(self.run_pid, self.family_marker)

    def command(self, os_pid: int) -> list[str]:
        """Its command line as the sampler saw it (the process may be gone since)."""
        return self.commands.get(os_pid) or procs.command(os_pid)

    def _learn(self) -> None:
        with self._lock:
            for birth in self._births.new():
                self.owners[birth["os_pid"]] = birth["path"]
                self.latest[birth["path"]] = birth["os_pid"]
            for event in self._events.new():
                self.lifecycle.append(event)
                if event.get("os_pid") and event.get("child"):
                    self.owners.setdefault(event["os_pid"], event["child"])

    def parent(self, ppid: int) -> str:
        """What a process's parent is, for a report: the run's head, another process of the
        run, init (the parent ended and the orphan was handed on), or something else."""
        if ppid == 1:
            return "init: its parent ended"
        if ppid == self.run_pid:
            return f"{self.label(ppid)}, the run's head"
        if ppid in self.seen:
            return f"{self.label(ppid)}, a process of the run"
        command = " ".join(procs.command(ppid))[:120]
        return f"not of the run: {command or 'gone'}"

    def where(self, os_pid: int) -> str:
        """Anything more that says whose a process is (a backend's observer knows more)."""
        return ""

    def label(self, os_pid: int) -> str:
        if os_pid == self.run_pid:
            return "rebeam run"
        if os_pid in self.owners:
            return self.owners[os_pid]
        argv = self.command(os_pid)
        text = " ".join(argv)
        if argv and argv[0].endswith("nats-server"):
            return "nats-server"
        for part in ("zygote", "reaper", "issuer"):
            if part in text:
                return part
        return "other"
