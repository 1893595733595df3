"""The event loop rebeam's own processes run on: uvloop when it is installed, else asyncio's.

uvloop (the ``rebeam[fast]`` extra) roughly halves the event loop's share of a message's
cost: its transports parse and write in C where asyncio's selector loop runs Python per
read and per callback (docs/sdk.md, "Performance"). Nothing in rebeam depends on which loop
runs; ``REBEAM_LOOP=asyncio`` picks asyncio's even when uvloop is installed (to compare, or
to rule the loop out when something misbehaves). Only the actor runtime uses this (every
actor process, whoever starts it); a program that runs its own loop keeps its choice.
``rebeam run`` itself stays on asyncio's loop: as a subreaper it handles SIGCHLD itself
(rebeam.local.adoption), and uvloop keeps that signal for its own child watching.

And how rebeam waits for something with a deadline on whichever loop runs: :func:`within`,
never ``asyncio.wait_for``, which loses cancellations on Python 3.11 (docs/architecture.md,
"How the code is kept livable").
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["LoopChoiceError", "loop_factory", "loop_name", "preload", "run", "within"]

T = TypeVar("T")

_VARIABLE = "REBEAM_LOOP"
_CHOICES = ("auto", "uvloop", "asyncio")


class LoopChoiceError(ValueError):
    """``REBEAM_LOOP`` names no loop, or one that is not installed."""


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """A factory of uvloop's loops, or None for asyncio's default.

    ``REBEAM_LOOP``: ``auto`` (the default: uvloop if importable), ``asyncio``, or
    ``uvloop`` (which must then be installed: asked for and missing is an error, not a
    silent fallback). Anything else is refused by name."""
    choice = os.environ.get(_VARIABLE, "auto").strip().lower() or "auto"
    if choice not in _CHOICES:
        raise LoopChoiceError(f"{_VARIABLE}={choice!r}: expected one of {', '.join(_CHOICES)}")
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise LoopChoiceError(
                f"{_VARIABLE}=uvloop but uvloop is not installed (pip install 'rebeam[fast]')"
            ) from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def loop_name() -> str:
    """Which loop :func:`run` would use: ``uvloop`` or ``asyncio``."""
    return "asyncio" if loop_factory() is None else "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the loop :func:`loop_factory` picks."""
    try:
        factory = loop_factory()
    except LoopChoiceError:
        main.close()  # never awaited: no "coroutine was never awaited" warning on top
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def preload() -> None:
    """Import uvloop if it is installed, whatever ``REBEAM_LOOP`` says: a process that forks
    actors (the zygote) does this once, so that no fork pays for the import."""
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: F401


async def within(awaitable: Awaitable[T], timeout: float | None) -> T:
    """``await awaitable`` in the calling task, for at most ``timeout`` seconds (None: no
    limit); TimeoutError after that, the awaited work cancelled as ``asyncio.wait_for`` does.

    Unlike ``wait_for`` on Python 3.11, a cancellation of the caller is always raised: not
    answered with the result of work that ended in the same turn of the loop, and not lost
    when the awaited code swallows it (nats-py's ``drain`` catches CancelledError and goes
    on closing): the caller's task still counts that request (``Task.cancelling``), so it
    is raised here once the awaited code is done."""
    task = asyncio.current_task()
    assert task is not None, "called from a task"
    requested = task.cancelling()
    try:
        async with asyncio.timeout(timeout):
            result = await awaitable
    except Exception as exc:
        if task.cancelling() > requested:
            raise asyncio.CancelledError from exc
        raise
    if task.cancelling() > requested:
        raise asyncio.CancelledError
    return result
