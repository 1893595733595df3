"""The event loop rebeam's own processes pick (rebeam._loop): uvloop when installed, asyncio's
when REBEAM_LOOP=asyncio, and a clear refusal of a value that names no loop."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from rebeam import _loop

HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


@pytest.mark.skipif(not HAS_UVLOOP, reason="uvloop (rebeam[fast]) is not installed")
@pytest.mark.parametrize("value", [None, "auto", "uvloop", " UVLOOP "])
def test_uvloop_when_installed(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("REBEAM_LOOP", raising=False)
    else:
        monkeypatch.setenv("REBEAM_LOOP", value)
    assert _loop.loop_name() == "uvloop"
    assert _loop.run(_loop_module()).startswith("uvloop")


def test_asyncio_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REBEAM_LOOP", "asyncio")
    assert _loop.loop_factory() is None
    assert _loop.loop_name() == "asyncio"
    assert _loop.run(_loop_module()).startswith("asyncio")


def test_a_value_naming_no_loop_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REBEAM_LOOP", "trio")
    with pytest.raises(_loop.LoopChoiceError, match=r"REBEAM_LOOP='trio'.*asyncio"):
        _loop.run(_loop_module())


@pytest.mark.skipif(HAS_UVLOOP, reason="uvloop is installed")
def test_uvloop_asked_for_but_missing_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REBEAM_LOOP", "uvloop")
    with pytest.raises(_loop.LoopChoiceError, match=r"rebeam\[fast\]"):
        _loop.loop_factory()
