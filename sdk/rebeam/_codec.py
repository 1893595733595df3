"""The wire codec: msgpack of JSON-like values, bytes, pids and registered pydantic models.

Never pickle: bytes from the network are data, never code. Three msgpack extension types:

* ``1`` a pid, as its string form;
* ``2`` an exit reason, as msgpack of its wire form;
* ``3`` a registered pydantic model, as msgpack ``[name, fields]``; the receiver validates the
  fields with the model class registered under that name, so a message can only become a type
  the receiving program chose to accept.

Tuples travel as lists and sets are refused: msgpack has neither, and silently turning a set
into a list would surprise the receiver more than an error at the sender.

Decoding is bounded before it recurses (:mod:`rebeam._limits`): an extension's payload is
decoded from inside the decoder, and at most ``MAX_EXT_DEPTH`` extensions may nest.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any, TypeVar

import msgpack

from rebeam._limits import MAX_EXT_DEPTH
from rebeam.errors import CodecError
from rebeam.exits import ExitReason
from rebeam.pids import Pid

if TYPE_CHECKING:
    import pydantic

__all__ = ["decode", "encode", "message", "registered_models"]

_EXT_PID = 1
_EXT_EXIT = 2
_EXT_MODEL = 3

_models_by_name: dict[str, type[pydantic.BaseModel]] = {}
_names_by_model: dict[type[pydantic.BaseModel], str] = {}

M = TypeVar("M", bound="type[pydantic.BaseModel]")


def message(cls: M | None = None, *, name: str | None = None) -> Any:
    """Register a pydantic model as a message type (a class decorator).

    Both sides of a conversation must register the model under the same name (the default
    is ``module.QualName``)::

        @rebeam.message
        class Order(pydantic.BaseModel):
            sku: str
            qty: int
    """

    import pydantic  # only programs that send models pay for importing pydantic

    def register(model: M) -> M:
        if not (isinstance(model, type) and issubclass(model, pydantic.BaseModel)):
            raise TypeError("rebeam.message registers pydantic models only")
        key = name or f"{model.__module__}.{model.__qualname__}"
        other = _models_by_name.get(key)
        if other is not None and other is not model:
            raise ValueError(f"message name {key!r} is already used by {other!r}")
        _models_by_name[key] = model
        _names_by_model[model] = key
        return model

    return register(cls) if cls is not None else register


def registered_models() -> dict[str, type[pydantic.BaseModel]]:
    return dict(_models_by_name)


def _default(value: Any) -> Any:
    if isinstance(value, Pid):
        return msgpack.ExtType(_EXT_PID, str(value).encode())
    if isinstance(value, ExitReason):
        return msgpack.ExtType(_EXT_EXIT, _pack(value.to_wire()))
    # A pydantic model can only exist once pydantic was imported; an actor process that
    # never touches pydantic does not load it (a few MiB of its idle RSS).
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(value, pydantic.BaseModel):
        key = _names_by_model.get(type(value))
        if key is None:
            raise CodecError(
                f"{type(value).__qualname__} is not a registered message type: "
                "decorate it with @rebeam.message"
            )
        return msgpack.ExtType(_EXT_MODEL, _pack([key, value.model_dump(mode="python")]))
    raise CodecError(
        f"cannot send a {type(value).__qualname__}: messages are JSON-like values, bytes, "
        "pids, exit reasons and @rebeam.message models"
    )


def _pack(value: Any) -> bytes:
    # A fresh packer: this is also called from inside _default, while the shared packer
    # below is in the middle of a message (a Packer is not re-entrant).
    return msgpack.packb(value, default=_default, use_bin_type=True, datetime=False)  # type: ignore[no-any-return]


# Reusing one Packer for top-level messages saves its set-up on every message (the hot path
# of cast and call). It resets its buffer when packing raises. One event loop thread uses it.
_packer = msgpack.Packer(default=_default, use_bin_type=True, datetime=False)


class _Nesting(threading.local):
    """How many extension payloads the decoder of this thread is inside of."""

    level = 0


_nesting = _Nesting()


def _decode_nested(data: bytes) -> Any:
    """Decode an extension's payload: the one recursion of decoding, checked before it
    happens. Each level holds a msgpack unpacker on the C stack, and a few hundred levels
    (under a KiB of input) overflow it: a segfault, not an exception."""
    level = _nesting.level
    if level >= MAX_EXT_DEPTH:
        raise CodecError(f"message nested too deeply: more than {MAX_EXT_DEPTH} extension levels")
    _nesting.level = level + 1
    try:
        return decode(data)
    finally:
        _nesting.level = level


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _EXT_PID:
        try:
            return Pid.parse(data.decode())
        except (UnicodeDecodeError, ValueError) as exc:
            raise CodecError(f"malformed pid in message: {exc}") from None
    if code == _EXT_EXIT:
        try:
            return ExitReason.from_wire(_decode_nested(data))
        except (ValueError, TypeError) as exc:
            raise CodecError(f"malformed exit reason in message: {exc}") from None
    if code == _EXT_MODEL:
        item = _decode_nested(data)
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
            raise CodecError("malformed model in message")
        model = _models_by_name.get(item[0])
        if model is None:
            raise CodecError(f"message type {item[0]!r} is not registered here")
        try:
            return model.model_validate(item[1])
        except ValueError as exc:  # pydantic.ValidationError is a ValueError
            raise CodecError(f"invalid {item[0]}: {exc}") from None
    raise CodecError(f"unknown extension type {code}")


def encode(value: Any) -> bytes:
    """Encode a message; raises :class:`CodecError` naming what cannot be sent."""
    try:
        return _packer.pack(value)  # type: ignore[no-any-return]
    except CodecError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError(f"cannot encode message: {exc}") from None


def decode(data: bytes) -> Any:
    """Decode a message; any malformed input raises :class:`CodecError`, nothing else.

    ``unpackb`` refuses trailing bytes itself (``ExtraData``), bounds every length (string,
    bytes, array, map, extension) by the input's size, nests containers at most 1024 deep
    (``StackError``), and since msgpack 1.0 defaults to ``raw=False`` and
    ``strict_map_key=True``: each keyword spelled out costs the receiving hot path, so only
    ``ext_hook`` is. Extensions nest at most ``MAX_EXT_DEPTH`` deep (:func:`_decode_nested`)."""
    try:
        return _unpackb(data, ext_hook=_ext_hook)
    except CodecError:
        raise
    except (RecursionError, msgpack.StackError):
        raise CodecError("message nested too deeply") from None
    except Exception as exc:  # msgpack raises a zoo of types for garbage input
        detail = f": {exc}" if str(exc) else ""
        raise CodecError(f"malformed message: {type(exc).__name__}{detail}") from None


_unpackb = msgpack.unpackb
