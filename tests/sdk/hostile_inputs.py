"""Hostile inputs the SDK's decoders must refuse, built as raw bytes (not with the codec, which
would never produce them), and helpers the hostile tests share."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import msgpack

from rebeam.pids import Pid

EXT_PID, EXT_EXIT, EXT_MODEL = 1, 2, 3


def nested_ext(depth: int, code: int = EXT_MODEL) -> msgpack.ExtType:
    """``depth`` extensions, each the payload of the one outside it: the value that used to
    overflow the C stack (about 41 KiB of it per level) in any process decoding it."""
    inner = msgpack.packb("normal")
    for _ in range(depth - 1):
        inner = msgpack.packb(msgpack.ExtType(code, inner))
    return msgpack.ExtType(code, inner)


def packed(value: object) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def message(kind: int, body: object) -> bytes:
    """A mailbox message ``[2, kind, body]``, packed raw (the subject names both pids)."""
    return packed([2, kind, body])


def envelope(kind: int, to: Pid | str, sender: str, body: object, msg_id: int = 1) -> bytes:
    """A durable message ``[1, kind, to, sender, msg_id, body]``, packed raw."""
    return packed([1, kind, str(to), sender, msg_id, body])


def owner_record(pid: Pid, value: object) -> bytes:
    """A registry record ``{pid, value}``, packed raw."""
    return packed({"pid": msgpack.ExtType(EXT_PID, str(pid).encode()), "value": value})


def deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def run_isolated(code: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter: a decoder that crashes the process shows as a
    failed test with its return code, instead of taking pytest down with it."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def until(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = 20.0, pause: float = 0.02
) -> None:
    """Wait for ``check()`` to hold, polling, with a deadline."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(pause)
