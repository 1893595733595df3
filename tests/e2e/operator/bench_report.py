"""Where an operator benchmark's table goes: the terminal, and the report file
``make bench-operator`` prints at the end (``$REBEAM_E2E_BENCH_REPORT``), each table after
the ones before it, a blank line between (so that each stays a Markdown table of its own)."""

from __future__ import annotations

import os

REPORT = "REBEAM_E2E_BENCH_REPORT"


def publish(table: list[str]) -> None:
    """Print ``table`` (its lines) and append it to the report, when one is named."""
    text = "\n".join(table)
    print("\n" + text, flush=True)
    path = os.environ.get(REPORT)
    if path:
        with open(path, "a") as out:  # opened at its end: tell() says if a table came before
            out.write(("\n" if out.tell() else "") + text + "\n")
