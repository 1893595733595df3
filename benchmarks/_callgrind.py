"""Instructions a program spends per message, counted by valgrind's callgrind: the steadiest
figure on a shared machine (the scheduler does not move it). A child process runs one of
this package's modules with a credential, once with a small count and once with a large
one; the difference over the difference of counts is the cost of one message, start-up and
imports cancelled out."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks._harness import child_env, write_private

ROOT = Path(__file__).resolve().parent.parent


def instructions(module: str, args: Sequence[str], credential: str, workdir: Path) -> int:
    """Instructions ``python -m module *args`` executed under callgrind, with ``credential``
    in the file a rebeam process reads; RuntimeError with valgrind's tail if it failed."""
    argv = [
        "valgrind", "--tool=callgrind", f"--callgrind-out-file={workdir}/callgrind.out",
        sys.executable, "-m", module, *args,
    ]  # fmt: skip
    credentials = write_private(workdir / "credential", credential)
    out = subprocess.run(
        argv, capture_output=True, text=True, cwd=ROOT, env=child_env(credentials), check=False
    )
    found = re.search(r"Collected : (\d+)", out.stderr)
    if out.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind run of {' '.join(args)} failed:\n{out.stderr[-2000:]}")
    return int(found.group(1))
