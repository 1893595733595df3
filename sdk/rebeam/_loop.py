"""The event loop rebeam's own processes run on: uvloop when it is installed, else asyncio's.

uvloop (the ``rebeam[fast]`` extra) roughly halves the event loop's share of a message's
cost: its transports parse and write in C where asyncio's selector loop runs Python per
read and per callback (docs/sdk.md, "Performance"). Nothing in rebeam depends on which loop
runs; ``REBEAM_LOOP=asyncio`` picks asyncio's even when uvloop is installed (to compare, or
to rule the loop out when something misbehaves). Only the actor runtime uses this (every
actor process, whoever starts it); a program that runs its own loop keeps its choice.
``rebeam run`` itself stays on asyncio's loop: as a subreaper it handles SIGCHLD itself
(rebeam.local.adoption), and uvloop keeps that signal for its own child watching.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["LoopChoiceError", "loop_factory", "loop_name", "preload", "run"]

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
