"""Which node the module-level API acts on: the *current node*.

Inside an actor it is the actor's node, which the runtime makes the default; in any other
program it is the one ``async with rebeam.connect(url)`` opened, per task context, so two
connections in one program do not mix. This module alone holds that state: the module-level
functions (``rebeam._api``) and ``rebeam.Registry.open`` read it from here, and nothing here
imports them, so both can build on it without importing each other.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import TYPE_CHECKING

from rebeam.errors import NotConnected

if TYPE_CHECKING:
    from rebeam._node import Node

__all__ = ["current_node", "enter", "restore", "set_default_node"]

_current: contextvars.ContextVar[Node | None] = contextvars.ContextVar("rebeam_node", default=None)
_default: Node | None = None


def set_default_node(node: Node | None) -> None:
    """The node used where no context set one (the runtime sets its actor's)."""
    global _default
    _default = node


def current_node() -> Node:
    node = _current.get() or _default
    if node is None:
        raise NotConnected(
            "no rebeam node here: use 'async with rebeam.connect(url) as node', "
            "or call this from inside an actor"
        )
    return node


def enter(node: Node) -> contextvars.Token[Node | None]:
    """Make ``node`` the current node of this context, until :func:`restore` is given the
    token."""
    return _current.set(node)


def restore(token: contextvars.Token[Node | None]) -> None:
    """The current node as it was before :func:`enter`. A block that ends in another context
    than it began in has nothing to restore there (the token is refused with ValueError)."""
    with contextlib.suppress(ValueError):
        _current.reset(token)
