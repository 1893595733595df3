"""The instance files through which other terminals find the ``rebeam run`` processes.

Each run writes one file of its own, ``$XDG_STATE_HOME/rebeam/runs/<namespace>.<run>.json``
(default ``~/.local/state/rebeam/runs/``): its NATS URL, the private server's pid, and the
credential of the run's owner, so only its owner may read it (docs/security.md). A file is
never overwritten by another run, and a run removes only its own: two runs of one namespace
are both found, and the end of one does not hide the other (README.md, "Several runs").

Each file records the run's pid with the time that process started (from ``/proc``), so a
file left behind by a run that was killed is told apart from a live run even once the pid
has been reused; a stale file is removed by the first command that finds it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rebeam._limits import loads_json

__all__ = ["InstanceFile", "NoInstance"]


class NoInstance(RuntimeError):
    """No ``rebeam run`` is running for that namespace (or its file is stale)."""


@dataclass(frozen=True)
class InstanceFile:
    """The one owner of the instance files: ``rebeam run`` writes its own, commands read."""

    path: Path

    @staticmethod
    def directory() -> Path:
        base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        return Path(base) / "rebeam" / "runs"

    @classmethod
    def location(cls, namespace: str, run_id: str) -> Path:
        # Neither a namespace nor a run id holds a '.': the name splits back unambiguously.
        return cls.directory() / f"{namespace}.{run_id}.json"

    @classmethod
    def write(
        cls,
        namespace: str,
        nats_url: str,
        run_id: str,
        *,
        nats_pid: int | None = None,
        credentials: str | None = None,
        nats_ca: str | None = None,
    ) -> InstanceFile:
        """Write this run's file, or rewrite it (the private server's pid changes when it is
        restarted). It holds the credential of the run's owner, and the CA file of a
        tls:// server the run was given. FileExistsError if another run's file has this
        name: it is never replaced."""
        path = cls.location(namespace, run_id)
        path.parent.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.parent.mkdir(exist_ok=True, mode=0o700)
        info = {
            "namespace": namespace,
            "nats_url": nats_url,
            "run_id": run_id,
            "pid": os.getpid(),
            "pid_started": _started(os.getpid()),
            "nats_pid": nats_pid,
            "started": time.time(),
            "credentials": credentials,
            "nats_ca": nats_ca,
        }
        # Whole or not at all: another terminal may read it at any moment. Made 0600 before
        # anything is written to it: it holds a credential.
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(info))
        try:
            os.link(partial, path)  # a new name only: never over another run's file
        except FileExistsError:
            if _owner(path) != os.getpid():
                partial.unlink()
                raise FileExistsError(f"{path}: another run's instance file") from None
            partial.replace(path)  # ours: the rewrite
        else:
            partial.unlink()
        return cls(path)

    @classmethod
    def runs(cls, namespace: str | None = None) -> list[dict[str, Any]]:
        """The runs that are running (of ``namespace``, else of every namespace), the
        earliest started first; stale files are removed on the way."""
        return _scan(cls.directory(), namespace)[0]

    @classmethod
    def read(cls, namespace: str, run_id: str | None = None) -> dict[str, Any]:
        """The run ``run_id`` (its id, or a prefix that names one run) of ``namespace``;
        without one, the run started last. NoInstance, saying why, when there is none."""
        live, stale = _scan(cls.directory(), namespace)
        if run_id:
            found = [info for info in live if str(info["run_id"]).startswith(run_id)]
            if len(found) == 1:
                return found[0]
            what = "no" if not found else "more than one"
            raise NoInstance(
                f"{what} rebeam run {run_id!r} is running for namespace {namespace!r} "
                f"(`rebeam runs -n {namespace}` lists them)"
            )
        if live:
            return live[-1]
        if stale:
            pids = ", ".join(str(pid) for pid in stale)
            if len(stale) == 1:
                gone = f"the rebeam run for namespace {namespace!r} (pid {pids}) is no longer "
                raise NoInstance(gone + "running; removed its stale instance file")
            gone = f"the rebeam runs for namespace {namespace!r} (pids {pids}) are no longer "
            raise NoInstance(gone + "running; removed their stale instance files")
        raise NoInstance(
            f"no rebeam run is running for namespace {namespace!r} "
            "(start one with `rebeam run app.yaml`, or pass --nats URL)"
        )

    def remove(self) -> None:
        """Remove this run's file (never another's)."""
        if _owner(self.path) == os.getpid():
            self.path.unlink(missing_ok=True)


def _scan(directory: Path, namespace: str | None) -> tuple[list[dict[str, Any]], list[int]]:
    """The live runs' files, the earliest started first, and the pids of the stale ones,
    which are removed."""
    live: list[dict[str, Any]] = []
    stale: list[int] = []
    pattern = f"{namespace}.*.json" if namespace else "*.json"
    for path in sorted(directory.glob(pattern)):
        try:
            text = path.read_text()
            info = loads_json(text, what=str(path))
            if not isinstance(info, dict):
                continue
            pid = int(info.get("pid", 0))
        except (OSError, ValueError, TypeError):
            continue  # unreadable, or not an instance file: nothing that can be talked to
        if _running(pid, info.get("pid_started")):
            live.append(info)
        elif _remove_if_unchanged(path, text):
            stale.append(pid)
    live.sort(key=lambda info: float(info.get("started") or 0))
    return live, stale


def _owner(path: Path) -> int | None:
    """The pid of the run whose file ``path`` is, or None."""
    try:
        info = loads_json(path.read_bytes(), what=str(path))
        return int(info["pid"]) if isinstance(info, dict) else None
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _remove_if_unchanged(path: Path, text: str) -> bool:
    """Remove a stale file unless its run has just rewritten it."""
    try:
        if path.read_text() == text:
            path.unlink()
            return True
    except OSError:
        pass
    return False


def _started(pid: int) -> int | None:
    """When the process started (clock ticks after boot), or None where /proc says nothing."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _running(pid: int, started: Any) -> bool:
    """Whether ``pid`` is still the process that started at ``started`` (and not a zombie)."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc here: all we can ask is whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    if fields[0] == "Z":
        return False
    return started is None or fields[19] == str(started)
