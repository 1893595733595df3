"""Watches a running bank from outside, in a thread: which OS process is which child (from
the incarnations' own birth records and from rebeam's lifecycle events), whether any child
ever has two live processes at once, and the RSS of every process of the run over time."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.soak import procs

SAMPLE = 0.05  # seconds between looks at the process table
RSS_EVERY = 0.5


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
    run_pid: int
    data: Path
    events: Path
    owners: dict[int, str] = field(default_factory=dict)  # os pid -> child path
    latest: dict[str, int] = field(default_factory=dict)  # child path -> newest os pid
    seen: dict[int, int | None] = field(default_factory=dict)  # every process, its start
    overlaps: list[Overlap] = field(default_factory=list)
    rss: list[tuple[float, str, int, int]] = field(default_factory=list)  # t, label, pid, B
    lifecycle: list[dict[str, Any]] = field(default_factory=list)
    samples: int = 0
    longest_gap: float = 0.0  # seconds between two looks at the process table, at most
    failure: BaseException | None = None

    def __post_init__(self) -> None:
        self._births = TailedFile(self.data / "births.jsonl")
        self._events = TailedFile(self.events)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="soak-observer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def current(self, path: str) -> int | None:
        with self._lock:
            os_pid = self.latest.get(path)
        return os_pid if os_pid is not None and procs.alive(os_pid) else None

    def _loop(self) -> None:
        next_rss = 0.0
        last = time.monotonic()
        try:
            while not self._stop.wait(SAMPLE):
                self.longest_gap = max(self.longest_gap, time.monotonic() - last)
                last = time.monotonic()
                self.sample(with_rss=time.monotonic() >= next_rss)
                if time.monotonic() >= next_rss:
                    next_rss = time.monotonic() + RSS_EVERY
        except BaseException as exc:  # a blind observer must fail the soak, not go quiet
            self.failure = exc
            raise

    def sample(self, with_rss: bool = False) -> None:
        self._learn()
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
        if with_rss:
            for os_pid in [*self.heads(), *family]:
                size = procs.rss_bytes(os_pid)
                if size and procs.alive(os_pid):  # 0: exiting, its memory gone already
                    self.rss.append((now, self.label(os_pid), os_pid, size))
        self.samples += 1

    def heads(self) -> list[int]:
        """Processes measured but not of the bank's family: ``rebeam run`` itself."""
        return [self.run_pid]

    def family(self) -> list[int]:
        """Every process of the bank now: what is checked for overlaps and orphans."""
        return procs.descendants(self.run_pid)

    def _learn(self) -> None:
        with self._lock:
            for birth in self._births.new():
                self.owners[birth["os_pid"]] = birth["path"]
                self.latest[birth["path"]] = birth["os_pid"]
            for event in self._events.new():
                self.lifecycle.append(event)
                if event.get("os_pid") and event.get("child"):
                    self.owners.setdefault(event["os_pid"], event["child"])

    def label(self, os_pid: int) -> str:
        if os_pid == self.run_pid:
            return "rebeam run"
        if os_pid in self.owners:
            return self.owners[os_pid]
        argv = procs.command(os_pid)
        text = " ".join(argv)
        if argv and argv[0].endswith("nats-server"):
            return "nats-server"
        for part in ("zygote", "reaper", "issuer"):
            if part in text:
                return part
        return "other"
