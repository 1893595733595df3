"""Actor processes that record their spans into files, and reading those files back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.tracing.traced_actors import TRACE_FILE

HERE = Path(__file__).resolve().parent
RELAY = "traced_actors:Relay"


def actor_env(trace_file: Path, *, tracing: bool) -> dict[str, str]:
    """The environment of a traced_actors process: its span file, tracing on or off."""
    return {
        "PYTHONPATH": str(HERE),
        TRACE_FILE: str(trace_file),
        "REBEAM_TRACING": "1" if tracing else "0",
    }


def read_spans(path: Path) -> list[dict[str, Any]]:
    """The spans an actor wrote so far (a line still being written is left for later)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]
