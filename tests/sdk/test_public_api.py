"""The public API is a tested contract."""

from __future__ import annotations

import types

import rebeam
import rebeam.errors


def test_all_is_exactly_the_public_names():
    # Submodules (rebeam.errors, rebeam.local, ...) appear as attributes once imported
    # anywhere; they are not part of the flat API.
    public = {
        name
        for name, value in vars(rebeam).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(rebeam.__all__) == public
    assert sorted(rebeam.__all__) == sorted(set(rebeam.__all__))
    assert "ExitReason" in rebeam.__all__


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
