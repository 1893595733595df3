"""The public API is a tested contract."""

from __future__ import annotations

import types

import rebeam
import rebeam.errors


def test_all_is_exactly_the_public_names():
    # Submodules (rebeam.errors, rebeam.local, ...) appear as attributes once imported
    # anywhere; they are not part of the flat API. dir(), not vars(): most names are
    # imported on first use.
    public = {
        name
        for name in dir(rebeam)
        if not name.startswith("_") and not isinstance(getattr(rebeam, name), types.ModuleType)
    }
    assert set(rebeam.__all__) == public
    assert sorted(rebeam.__all__) == sorted(set(rebeam.__all__))
    assert "ExitReason" in rebeam.__all__


# In a fresh interpreter, where nothing else has imported the names' modules yet.
RESOLVE_ALL = """
import sys
import rebeam
light = not any(name.split(".")[0] in ("nats", "msgpack", "aiohttp") for name in sys.modules)
for name in rebeam.__all__:
    exec(f"from rebeam import {name}")
    assert getattr(rebeam, name) is not None, name
namespace = {}
exec("from rebeam import *", namespace)
assert set(rebeam.__all__) <= set(namespace), set(rebeam.__all__) - set(namespace)
try:
    rebeam.NoSuchName
except AttributeError as exc:
    assert "NoSuchName" in str(exc), exc
else:
    raise AssertionError("rebeam.NoSuchName resolved")
print("light" if light else "heavy")
"""


def test_every_public_name_resolves_on_first_use():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", RESOLVE_ALL],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # import rebeam alone waits for no NATS client and no codec
    assert result.stdout.strip() == "light", result.stdout


def test_every_error_is_in_the_drawn_hierarchy():
    doc = rebeam.errors.__doc__ or ""
    for name in rebeam.errors.__all__:
        assert name in doc, name
        assert issubclass(getattr(rebeam.errors, name), rebeam.errors.RebeamError)
    assert issubclass(rebeam.CallTimeout, TimeoutError)
    assert issubclass(rebeam.RemoteError, rebeam.CalleeExited)


async def test_module_functions_need_a_node():
    import pytest

    with pytest.raises(rebeam.NotConnected, match=r"rebeam\.connect"):
        await rebeam.call("anyone", "hello")
    with pytest.raises(rebeam.NotConnected):
        rebeam.self_pid()
