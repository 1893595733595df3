"""Local processes owned by the test run: started with a death signal, stopped by their own pid."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

__all__ = ["ManagedProcess", "WaitTimeout", "die_with_parent", "wait_for"]

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1
# Loaded here, in the parent: the child between fork and exec must not import or dlopen.
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def die_with_parent() -> None:
    """``preexec_fn``: Linux SIGKILLs the child when the thread that forked it dies.

    Note the *thread*: fork from a thread that lives as long as the child (the kubelet forks from
    its event-loop thread, which lives for the whole session).
    """
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class WaitTimeout(AssertionError):
    """A condition did not come true before its deadline (an AssertionError: a test failure)."""


def wait_for(
    condition: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
) -> T:
    """Poll ``condition`` until it returns a truthy value (returned) or ``timeout`` passes.

    Exceptions from ``condition`` propagate: a condition that may fail transiently must catch.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class ManagedProcess:
    """One long-lived service process (etcd, kube-apiserver, ...) with its log in a file."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.args = list(args)
        self.log_path = log_path
        log = open(log_path, "ab")  # noqa: SIM115 - the child owns it
        try:
            self.popen = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                preexec_fn=die_with_parent,
            )
        finally:
            log.close()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def check_running(self) -> None:
        """Raise with the tail of the log if the process has exited."""
        if self.popen.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with code {self.popen.returncode}; "
                f"last lines of {self.log_path}:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, wait up to ``grace``, then SIGKILL. Safe to call twice."""
        if self.popen.poll() is not None:
            return
        os.kill(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
