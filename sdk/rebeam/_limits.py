"""The limits every decoder of outside input applies, in one place (docs/sdk.md, "Input limits").

Bytes from the network or from a file are decoded with a size limit and a nesting limit
checked *before* anything recurses over them:

* msgpack (the codec): the only recursion is an extension's payload decoded from inside the
  decoder (an exit reason, a model). Each level holds a whole msgpack unpacker on the C
  stack (tens of KiB), so a few hundred levels overflow it: a segfault, which no exception
  handler sees. :data:`MAX_EXT_DEPTH` levels are allowed. Containers (arrays, maps) are
  unpacked with an explicit stack, bounded by msgpack itself (1024 levels), and every
  length is bounded by the input's size.
* JSON (lifecycle events, exit records, control requests and replies): Python's parser
  raises ``RecursionError`` on deep input instead of ``ValueError``; :func:`loads_json`
  turns that into a ``ValueError`` and refuses input larger or deeper than its limits, so a
  caller that handles ``ValueError`` handles every bad input.
* exit reasons: the ``{shutdown, info}`` payload is the one free-form value in them, and it
  is printed and re-encoded on many paths: at most :data:`MAX_REASON_DEPTH` levels.
* files a user names (manifests, credentials, CA bundles) or a process wrote (exit records):
  :func:`read_bounded` reads at most one byte past the reader's limit, so a path that names
  ``/dev/zero`` or a pipe fed forever costs what a file of the limit does.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any

__all__ = [
    "MAX_CREDENTIAL_BYTES",
    "MAX_EXT_DEPTH",
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_REASON_DEPTH",
    "TooLarge",
    "describe",
    "exceeds_depth",
    "loads_json",
    "read_bounded",
]

MAX_EXT_DEPTH = 8
MAX_REASON_DEPTH = 32
MAX_JSON_BYTES = 1024 * 1024  # NATS's default max_payload: every legitimate event fits
MAX_JSON_DEPTH = 64
MAX_CREDENTIAL_BYTES = 64 * 1024  # a credentials file: no token or JWT comes near it


def exceeds_depth(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists and dicts more than ``limit`` levels deep (a scalar is
    level 0). Iterative: it must not itself recurse on the input it checks."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def loads_json(
    data: bytes | str,
    *,
    what: str,
    max_bytes: int = MAX_JSON_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
) -> Any:
    """Parse JSON from outside; raises ``ValueError`` naming ``what`` and the problem for
    input that is too large, too deep, not UTF-8 or not JSON."""
    if len(data) > max_bytes:
        raise ValueError(f"{what} of {len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        value = json.loads(data)
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"{what} is not valid JSON: {exc}") from None
    if exceeds_depth(value, max_depth):
        raise ValueError(f"{what} nests more than {max_depth} levels")
    return value


def describe(value: Any, limit: int = 60) -> str:
    """A short, safe description of a refused value for an error message: a scalar's repr
    cut to ``limit`` characters, else its type (the repr of a deep or huge container could
    itself fail, or fill a log)."""
    if value is None or isinstance(value, bool | int | float | str | bytes):
        text = repr(value)
        return text if len(text) <= limit else text[: limit - 3] + "..."
    return f"a {type(value).__name__}"


class TooLarge(ValueError):
    """A file holds more than its reader's limit. ``size`` is its size when it is a regular
    file, None when it is not (a device or a pipe: only "more than the limit" is known)."""

    def __init__(self, limit: int, size: int | None) -> None:
        super().__init__(
            f"{size} bytes, the limit is {limit}"
            if size is not None
            else f"more than the limit of {limit} bytes"
        )
        self.limit = limit
        self.size = size


def read_bounded(path: str | os.PathLike[str], limit: int) -> bytes:
    """The contents of ``path`` if it holds at most ``limit`` bytes, else :class:`TooLarge`.
    Never reads more than ``limit + 1`` bytes. ``OSError`` from opening or reading passes
    through, for the caller to word with what the file was for."""
    with open(path, "rb") as source:
        data = source.read(limit + 1)
        if len(data) <= limit:
            return data
        info = os.fstat(source.fileno())
    raise TooLarge(limit, info.st_size if stat.S_ISREG(info.st_mode) else None)
