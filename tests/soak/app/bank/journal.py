"""An append-only file of JSON lines, each written by one ``write`` system call.

One ``write`` on an ``O_APPEND`` descriptor is never half done when the process is killed
(a signal is acted on between system calls), so after a SIGKILL the file holds every record
whose ``append`` returned, and no partial one. A machine crash is another matter: nothing is
fsynced, since the soak kills processes, not the machine (docs/soak.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MAX_LINE = 64 * 1024  # a record is a few dozen bytes; anything longer is damage


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        written = os.write(self._fd, line)
        if written != len(line):  # a full disk: say so rather than keep half a record
            raise OSError(f"{self.path}: wrote {written} of {len(line)} bytes")

    def close(self) -> None:
        os.close(self._fd)


def read(path: Path) -> Iterator[dict[str, Any]]:
    """Every whole record of ``path`` (none if it does not exist yet)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line:
            continue
        if len(line) > MAX_LINE:
            raise ValueError(f"{path}:{number}: a record of {len(line)} bytes")
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: not a JSON record ({exc})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{number}: not a JSON object")
        yield record
