"""The OS process table, read from /proc: who is alive, who is whose child, how big."""

from __future__ import annotations

import os
from dataclasses import dataclass

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")  # the unit of a process's start time
CHILDREN_FILES = os.path.exists(f"/proc/self/task/{os.getpid()}/children")  # CONFIG_PROC_CHILDREN


def _stat(os_pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{os_pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(os_pid: int) -> bool:
    """Exists and is not a zombie. A stopped (SIGSTOP) process is alive: it holds its
    connection, its names and its pid, and SIGCONT brings it back."""
    fields = _stat(os_pid)
    return fields is not None and fields[0] != "Z"


@dataclass(frozen=True)
class Stat:
    """A process's place in the table, from /proc/<pid>/stat."""

    state: str  # R running, S sleeping, D uninterruptible, T stopped, Z zombie, ...
    ppid: int
    pgid: int
    sid: int


def stat(os_pid: int) -> Stat | None:
    fields = _stat(os_pid)
    if fields is None:
        return None
    return Stat(fields[0], int(fields[1]), int(fields[2]), int(fields[3]))


def start_time(os_pid: int) -> int | None:
    """Clock ticks after boot when the process started: tells a reused pid apart."""
    fields = _stat(os_pid)
    return int(fields[19]) if fields else None


def age(os_pid: int) -> float | None:
    """Seconds since the process started."""
    born = start_time(os_pid)
    try:
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, IndexError, ValueError):
        return None
    return None if born is None else uptime - born / TICKS


def descendants(root: int) -> list[int]:
    """Every process below ``root``. Read down from ``root`` through each thread's
    ``children`` file, so the cost is the family's size: a walk of the whole /proc took half
    a second on a busy machine with 2,000 processes, longer than a sampling interval."""
    if not CHILDREN_FILES:
        return _descendants_from_stat(root)
    found, stack = [], [root]
    while stack:
        for child in _children(stack.pop()):
            found.append(child)
            stack.append(child)
    return found


def _children(os_pid: int) -> list[int]:
    try:
        threads = os.listdir(f"/proc/{os_pid}/task")
    except OSError:
        return []  # gone
    kids: list[int] = []
    for thread in threads:
        try:
            with open(f"/proc/{os_pid}/task/{thread}/children") as f:
                kids += [int(kid) for kid in f.read().split()]
        except (OSError, ValueError):
            continue  # that thread ended
    return kids


def _descendants_from_stat(root: int) -> list[int]:
    """The same from every process's parent, for a kernel without ``children`` files."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None:
                parents.setdefault(int(fields[1]), []).append(int(entry))
    found, stack = [], [root]
    while stack:
        for child in parents.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def family(root: int, marker: str | None = None) -> list[int]:
    """The descendants of ``root``; with ``marker``, only the subtrees of those whose
    command line has ``marker`` in an argument (the pods' runtimes among a test kubelet's
    other children)."""
    found = descendants(root)
    if marker is None:
        return found
    tops = [p for p in found if any(marker in a for a in command(p))]
    return [*tops, *(d for p in tops for d in descendants(p))]


def rss_bytes(os_pid: int) -> int | None:
    try:
        with open(f"/proc/{os_pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return None


def command(os_pid: int) -> list[str]:
    try:
        with open(f"/proc/{os_pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def environ(os_pid: int) -> dict[str, str]:
    """Its environment as it was at its exec (empty if gone or not ours to read)."""
    try:
        with open(f"/proc/{os_pid}/environ", "rb") as f:
            entries = f.read().split(b"\0")
    except OSError:
        return {}
    pairs = (e.decode(errors="replace").partition("=") for e in entries if e)
    return {name: value for name, _, value in pairs}
