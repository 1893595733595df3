"""YAML in, JSON-shaped documents out, within limits a hostile file cannot get around.

A manifest may come from anywhere, so reading one must neither crash nor run away:

* **Nesting** is at most :data:`MAX_DEPTH` levels, counted as the documents will be used,
  that is with every alias expanded. Nodes are put together with an explicit stack, never by
  recursion, so even a file that is nothing but ``[[[[...`` is refused cleanly.
* **Aliases** may add at most :data:`MAX_ALIAS_NODES` nodes to a file. An alias costs as many
  nodes as its anchor holds when expanded: that is what a consumer that copies the data (JSON
  for a child's argv, pydantic, the Kubernetes API) pays, and it is where the "billion laughs"
  blow-up lives. An alias inside its own anchor (a cycle) is refused.
* **Documents**: at most :data:`MAX_DOCUMENTS` in one file.
* **Data** is what JSON and the Kubernetes API hold: strings, whole numbers that fit in 64
  bits, finite numbers, true/false, null, lists and mappings with string keys, each key once.
  Everything else PyYAML could build (timestamps, binary, sets, Python objects, unknown
  ``!tags``) is refused, as is a lone UTF-16 surrogate from an escape such as ``"\\ud800"``.

The file size limit is applied by the caller before the text gets here (:mod:`loading`).
Every refusal is a :class:`YamlRefused` with the 1-based line it is about. The limits and their
messages are listed in the README ("Manifest limits"); what this relies on in PyYAML is in
docs/architecture.md ("Reading a manifest").
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

__all__ = [
    "MAX_ALIAS_NODES",
    "MAX_DEPTH",
    "MAX_DOCUMENTS",
    "Document",
    "YamlRefused",
    "read_documents",
    "shown",
]

MAX_DEPTH: Final = 64
MAX_ALIAS_NODES: Final = 10_000
MAX_DOCUMENTS: Final = 1000

_INT64: Final = range(-(2**63), 2**63)
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_STR: Final = "tag:yaml.org,2002:str"
_MERGE: Final = "tag:yaml.org,2002:merge"

# libyaml's parser when PyYAML was built with it: about five times faster than the pure
# Python one, which matters for a file at the size limit. Both produce the same events.
_PARSER: Final[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlRefused(Exception):
    """The text is not YAML this loader accepts; ``line`` is 1-based (None: the whole text)."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


@dataclass(frozen=True)
class Document:
    """One document: its data, and its node tree for line numbers."""

    data: Any
    node: Node


def read_documents(text: str) -> list[Document]:
    """Every non-empty document of ``text``. Raises YamlRefused."""
    try:
        roots = list(_Composer().documents(yaml.parse(text, Loader=_PARSER)))
        constructor = _Constructor()
        documents = [Document(constructor.construct_document(root), root) for root in roots]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = exc.problem or exc.context or "not valid YAML"
        if reason == _LIBYAML_TOO_DEEP:  # libyaml's own guard, met while it scans ahead
            raise YamlRefused(_line(mark), _too_deep(f"more than {MAX_DEPTH}")) from None
        raise YamlRefused(_line(mark), f"invalid YAML: {reason}") from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow in a file
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise YamlRefused(line, f"invalid YAML: character U+{code:04X} is not allowed") from None
    except yaml.YAMLError as exc:
        raise YamlRefused(None, f"invalid YAML: {' '.join(str(exc).split())}") from None
    except UnicodeEncodeError:  # a lone surrogate in the text, which no file can hold
        raise YamlRefused(None, "invalid YAML: the text is not valid Unicode") from None
    # An empty document (after a trailing '---', say) holds null: nothing to read.
    return [d for d in documents if d.data is not None]


# --- composing: events to nodes, with the limits -------------------------------------------


_LIBYAML_TOO_DEEP: Final = "exceeded maximum nesting depth"


def _line(mark: Any) -> int | None:
    return mark.line + 1 if mark is not None else None


def _too_deep(depth: str) -> str:
    return f"nested too deep: {depth} levels here, the limit is {MAX_DEPTH}"


@dataclass
class _Open:
    """A sequence or mapping whose end event has not come yet."""

    node: SequenceNode | MappingNode
    key: Node | None = None  # a mapping's key that waits for its value
    keys: dict[tuple[str, str], int | None] = field(default_factory=dict)  # key -> its line


class _Composer:
    """PyYAML's composer, rewritten without recursion and with the limits checked as the
    nodes arrive, so a refusal comes before the expensive part, not after it."""

    def __init__(self) -> None:
        self.resolver: Any = _Resolver()  # PyYAML's stubs leave resolve() untyped
        self.documents_seen = 0
        self.alias_nodes = 0
        self.anchors: dict[str, Node] = {}
        # id(node) -> (nodes when fully expanded, levels of nesting): known once it is complete.
        self.shape: dict[int, tuple[int, int]] = {}
        self.stack: list[_Open] = []
        self.root: Node | None = None

    def documents(self, events: Iterator[yaml.Event]) -> Iterator[Node]:
        for event in events:
            if isinstance(event, yaml.DocumentStartEvent):
                self.documents_seen += 1
                if self.documents_seen > MAX_DOCUMENTS:
                    raise YamlRefused(
                        _line(event.start_mark),
                        f"too many documents: more than {MAX_DOCUMENTS}, the limit is "
                        f"{MAX_DOCUMENTS} per file",
                    )
                self.anchors, self.shape, self.root = {}, {}, None
            elif isinstance(event, yaml.DocumentEndEvent):
                if self.root is not None:
                    yield self.root
            elif isinstance(event, yaml.AliasEvent):
                self._alias(event)
            elif isinstance(event, yaml.ScalarEvent):
                self._scalar(event)
            elif isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
                self._start(event)
            elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
                self._end(event)

    def _alias(self, event: yaml.AliasEvent) -> None:
        line = _line(event.start_mark)
        node = self.anchors.get(str(event.anchor))
        if node is None:
            raise YamlRefused(line, f"invalid YAML: undefined alias *{event.anchor}")
        if id(node) not in self.shape:
            raise YamlRefused(
                line, f"invalid YAML: alias *{event.anchor} is inside its own anchor (a cycle)"
            )
        size, height = self.shape[id(node)]
        self.alias_nodes += size
        if self.alias_nodes > MAX_ALIAS_NODES:
            raise YamlRefused(
                line,
                f"aliases expand too much: {self.alias_nodes} nodes so far, the limit is "
                f"{MAX_ALIAS_NODES} per file",
            )
        self._check_depth(len(self.stack) + height, line)
        self._attach(node)

    def _scalar(self, event: yaml.ScalarEvent) -> None:
        if _SURROGATE.search(event.value):
            raise YamlRefused(
                _line(event.start_mark), "invalid YAML: a lone surrogate is not a character"
            )
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.resolver.resolve(ScalarNode, event.value, event.implicit)
        start: Any = event.start_mark  # libyaml's marks are its own class, alike to use
        end: Any = event.end_mark
        node = ScalarNode(tag, event.value, start, end, event.style)
        self._anchor(event.anchor, node)
        self.shape[id(node)] = (1, 0)
        self._attach(node)

    def _start(self, event: yaml.SequenceStartEvent | yaml.MappingStartEvent) -> None:
        self._check_depth(len(self.stack) + 1, _line(event.start_mark))
        kind = SequenceNode if isinstance(event, yaml.SequenceStartEvent) else MappingNode
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.resolver.resolve(kind, None, event.implicit)
        start: Any = event.start_mark
        node = kind(tag, [], start, None, flow_style=event.flow_style)
        self._anchor(event.anchor, node)  # complete only at its end: see _alias
        self.stack.append(_Open(node))

    def _end(self, event: yaml.SequenceEndEvent | yaml.MappingEndEvent) -> None:
        node = self.stack.pop().node
        node.end_mark = event.end_mark
        children: list[Node] = (
            [n for pair in node.value for n in pair]
            if isinstance(node, MappingNode)
            else list(node.value)
        )
        shapes = [self.shape[id(child)] for child in children]
        size = 1 + sum(s for s, _ in shapes)
        height = 1 + max((h for _, h in shapes), default=0)
        self.shape[id(node)] = (size, height)
        self._attach(node)

    def _anchor(self, anchor: str | None, node: Node) -> None:
        if anchor is not None:
            self.anchors[anchor] = node  # YAML lets a later anchor of the same name win

    def _check_depth(self, depth: int, line: int | None) -> None:
        if depth > MAX_DEPTH:
            raise YamlRefused(line, _too_deep(str(depth)))

    def _attach(self, node: Node) -> None:
        if not self.stack:
            self.root = node
            return
        parent = self.stack[-1]
        if isinstance(parent.node, SequenceNode):
            parent.node.value.append(node)
        elif parent.key is None:
            parent.key = self._key(parent, node)
        else:
            parent.node.value.append((parent.key, node))
            parent.key = None

    def _key(self, parent: _Open, node: Node) -> Node:
        line = _line(node.start_mark)
        if not isinstance(node, ScalarNode):
            raise YamlRefused(
                line,
                "invalid YAML: a mapping key must be a string, not a "
                + ("list" if isinstance(node, SequenceNode) else "mapping"),
            )
        identity = (str(node.tag), str(node.value))
        if identity in parent.keys:
            first = parent.keys[identity]
            raise YamlRefused(
                line,
                f"invalid YAML: duplicate key {shown(node.value)}"
                + (f" (first on line {first})" if first else ""),
            )
        parent.keys[identity] = line
        return node


def shown(value: object, limit: int = 60) -> str:
    """A value from a manifest, quoted for a message and cut short: a message stays one line
    of reasonable length whatever the file holds (``repr`` escapes control characters)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Resolver(Resolver):
    """YAML 1.1's plain scalars as PyYAML resolves them, except timestamps and ``=``: JSON
    (and so the Kubernetes API) has neither, so ``2024-01-01`` stays the string it reads as."""

    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in rules if not tag.endswith((":timestamp", ":value"))]
        for first, rules in Resolver.yaml_implicit_resolvers.items()
    }


# --- constructing: nodes to JSON-shaped data ------------------------------------------------


class _Constructor(SafeConstructor):
    """SafeConstructor narrowed to JSON's data. PyYAML builds shared (aliased) nodes once and
    without recursion; the composer has already bounded how much they expand."""

    def construct_yaml_int(self, node: ScalarNode) -> int:
        try:
            value = super().construct_yaml_int(node)
        except ValueError:  # more digits than Python converts
            value = None
        if value is None or value not in _INT64:
            raise ConstructorError(
                None, None, "a whole number must fit in 64 bits", node.start_mark
            )
        return value

    def construct_yaml_float(self, node: ScalarNode) -> float:
        value = super().construct_yaml_float(node)
        if not math.isfinite(value):
            raise ConstructorError(
                None,
                None,
                "a number must be finite (JSON has no infinity or NaN)",
                node.start_mark,
            )
        return value

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)  # '<<' merges; what is left must be string keys
        for key, _ in node.value:
            if key.tag != _STR:
                raise ConstructorError(
                    None,
                    None,
                    f"a mapping key must be a string: quote {shown(str(key.value))}",
                    key.start_mark,
                )
        return super().construct_mapping(node, deep)

    def construct_unsupported(self, node: Node) -> Any:
        if node.tag == _MERGE:
            problem = "'<<' merges mappings as a key; quote it to mean the string"
        else:
            problem = (
                f"unsupported tag {shown(str(node.tag))}: a manifest holds strings, numbers, "
                "true/false, null, lists and mappings"
            )
        raise ConstructorError(None, None, problem, node.start_mark)


_Constructor.yaml_constructors = {
    f"tag:yaml.org,2002:{name}": SafeConstructor.yaml_constructors[f"tag:yaml.org,2002:{name}"]
    for name in ("null", "bool", "str", "seq", "map")
}
_Constructor.yaml_constructors |= {
    "tag:yaml.org,2002:int": _Constructor.construct_yaml_int,
    "tag:yaml.org,2002:float": _Constructor.construct_yaml_float,
    None: _Constructor.construct_unsupported,
}
_Constructor.yaml_multi_constructors = {}
