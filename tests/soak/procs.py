"""The OS process table, read from /proc: who is alive, who is whose child, how big."""

from __future__ import annotations

import os

PAGE = os.sysconf("SC_PAGE_SIZE")


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


def start_time(os_pid: int) -> int | None:
    """Clock ticks after boot when the process started: tells a reused pid apart."""
    fields = _stat(os_pid)
    return int(fields[19]) if fields else None


def descendants(root: int) -> list[int]:
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
