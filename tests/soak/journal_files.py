"""Reading the bank's files for the checker: a damaged record is a finding, not a crash."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.soak.check import Findings

MAX_LINE = 64 * 1024


def records(path: Path, found: Findings) -> Iterator[dict[str, Any]]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line:
            continue
        try:
            if len(line) > MAX_LINE:
                raise ValueError(f"{len(line)} bytes")
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            found.add("damaged record", f"{path.name}:{number}: {exc}")
            continue
        yield record
