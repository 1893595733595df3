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
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "MAX_EXT_DEPTH",
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_REASON_DEPTH",
    "describe",
    "exceeds_depth",
    "loads_json",
]

MAX_EXT_DEPTH = 8
MAX_REASON_DEPTH = 32
MAX_JSON_BYTES = 1024 * 1024  # NATS's default max_payload: every legitimate event fits
MAX_JSON_DEPTH = 64


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
