"""Fuzz the manifest loader: structure-aware mutations of every manifest under examples/.

Each input is an example, mutated as data (keys dropped, duplicated, renamed or added; values
of the wrong type, huge numbers, odd Unicode, NULs, deep nesting, shared subtrees that the
dumper writes as anchors and aliases) and then as text (YAML features: tags, merge keys,
alias bombs and cycles, duplicate keys, more documents, flow style; stray bytes that are
not UTF-8; truncation). Whatever comes out, ``load_files`` gives either resources that the
backends can use, or problems of the documented form: ``file[:line]: [Kind/name: ]
[field.path: ]message``, one short line each. Never another exception.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rebeam.local.runner import local_problems
from rebeam.spec import (
    Actor,
    ActorTemplate,
    Supervisor,
    SupervisorSpec,
    child_specs,
    load_files,
    load_text,
)
from tests.fuzz.report import tally

ROOT = Path(__file__).parents[2]
EXAMPLES = {p: p.read_text() for p in sorted((ROOT / "examples").rglob("*.yaml"))}
DOCUMENTS = {p: [d for d in yaml.safe_load_all(t) if d is not None] for p, t in EXAMPLES.items()}
LONGEST_PROBLEM = 400  # a message quotes at most a short excerpt of any value

# --- mutating the data -------------------------------------------------------------------

Path_ = tuple[Any, ...]


def _paths(node: Any, here: Path_ = ()) -> list[Path_]:
    """Every place in a document: mapping keys and list indexes."""
    found = [here]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*here, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, (*here, i))
    return found


def _at(node: Any, path: Path_) -> Any:
    for part in path:
        node = node[part]
    return node


def _reaches(node: Any, wanted: Any) -> bool:
    """Whether ``wanted`` (by identity) is ``node`` or inside it."""
    stack, seen = [node], set()
    while stack:
        item = stack.pop()
        if item is wanted:
            return True
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, dict):
            stack += item.values()
        elif isinstance(item, list):
            stack += item
    return False


def _nested(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


WEIRD_TEXT = st.sampled_from(
    ["", " ", "\x00", "a\x00b", "\n", "a\nb", "\u202e", "\ufeff", "💥", "\x1b[2J", "é" * 300]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**30, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    WEIRD_TEXT,
    st.sampled_from(["5s", "0s", "1m30s", "99999999999h", "brutal_kill", "infinity", "-1"]),
    st.sampled_from(["permanent", "one_for_all", "simple_one_for_one", "Supervisor", "Actor"]),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=4),
    st.dictionaries(st.text(max_size=10), SCALARS, max_size=3),
    st.builds(_nested, st.integers(1, 120), SCALARS),
)


@st.composite
def mutate_data(draw: st.DrawFn, document: Any) -> Any:
    """One change somewhere in ``document`` (a deep copy); may return a new root."""
    paths = _paths(document)
    path = draw(st.sampled_from(paths))
    target = _at(document, path)
    operation = draw(
        st.sampled_from(["replace", "drop", "add", "rename", "share", "duplicate", "empty"])
    )
    if operation == "replace" or not path:
        value = draw(VALUES)
        if not path:
            return value if operation == "replace" else document
        _at(document, path[:-1])[path[-1]] = value
    elif operation == "drop":
        del _at(document, path[:-1])[path[-1]]
    elif operation == "add" and isinstance(target, dict):
        target[draw(st.one_of(st.text(max_size=12), WEIRD_TEXT))] = draw(VALUES)
    elif operation == "add" and isinstance(target, list):
        target.append(draw(VALUES))
    elif operation == "rename":
        parent = _at(document, path[:-1])
        if isinstance(parent, dict):
            parent[str(path[-1]) + draw(st.sampled_from(["x", "_", "S", "\x00", " "]))] = (
                parent.pop(path[-1])
            )
    elif operation == "share":
        # The same object in two places: the dumper writes an anchor and an alias.
        elsewhere = draw(st.sampled_from(paths))
        parent = _at(document, elsewhere[:-1]) if elsewhere else None
        if parent is not None and not _reaches(target, parent):  # no cycles
            parent[elsewhere[-1]] = target
    elif operation == "duplicate" and isinstance(target, list) and target:
        target.extend(copy.deepcopy(target) * draw(st.integers(1, 70)))
    elif operation == "empty" and isinstance(target, dict | list):
        target.clear()
    return document


# --- mutating the text -------------------------------------------------------------------

BOMB = (
    "bomb: {a: &a [x, x, x, x, x, x, x, x, x], "
    + ", ".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]"
        for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + "}"
)
SNIPPETS = [
    "x: !foo bar",
    "x: !!python/name:os.system ls",
    "x: !!python/object/apply:os.system [ls]",
    "x: !!binary aGVsbG8=",
    "x: !!timestamp 2001-12-14",
    "x: !!set {a, b}",
    "x: !!omap [a: 1]",
    "x: !!str 5",
    "x: !!int 0x1F",
    "x: !!float .nan",
    "? [a, b]\n: complex key",
    "? {a: 1}\n: complex key",
    "x: &cycle [1, *cycle]",
    "x: *undefined",
    "<<: {restart: transient}",
    "<<: [{a: 1}, {b: 2}]",
    "<<: 5",
    "x: <<",
    "x: 2024-01-31",
    "x: =",
    "x: 1e400",
    "x: 1.0e+400",
    "x: " + "9" * 5000,
    "x: 0x" + "f" * 40,
    "x: 0b" + "1" * 100,
    "x: 190:20:30",
    'x: "\\0\\x00\\u0000"',
    'x: "\\ud800"',
    "x: " + "[" * 200 + "]" * 200,
    "x: " + "{a: " * 70 + "1" + "}" * 70,
    BOMB,
    "1: int key",
    "null: null key",
    "true: bool key",
    "x: 'a\tb'",
]


@st.composite
def mutate_text(draw: st.DrawFn, data: bytes) -> bytes:
    lines = data.split(b"\n")
    where = draw(st.integers(0, max(len(lines) - 1, 0)))
    operation = draw(
        st.sampled_from(
            ["snippet", "byte", "truncate", "duplicate-line", "document", "flow", "indent"]
        )
    )
    if operation == "snippet":
        line = lines[where]
        indent = len(line) - len(line.lstrip(b" "))
        if line.rstrip().endswith(b":"):
            indent += 2  # the first entry of the block mapping this line opens
        snippet = draw(st.sampled_from(SNIPPETS)).encode()
        lines.insert(where + 1, b"\n".join(b" " * indent + s for s in snippet.split(b"\n")))
    elif operation == "byte":
        blob = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\x07", b"\r"]))
        position = draw(st.integers(0, len(data)))
        return data[:position] + blob + data[position:]
    elif operation == "truncate":
        return data[: draw(st.integers(0, len(data)))]
    elif operation == "duplicate-line":
        lines.insert(where, lines[where])  # usually a duplicate key
    elif operation == "document":
        other = draw(st.sampled_from(sorted(EXAMPLES)))
        separator = draw(st.sampled_from([b"\n---\n", b"\n--- |\n", b"\n...\n---\n"]))
        return data + separator + EXAMPLES[other].encode()
    elif operation == "flow":
        return yaml.safe_dump_all(yaml.safe_load_all(data), default_flow_style=True).encode()
    elif operation == "indent":
        lines[where] = b" " * draw(st.integers(0, 9)) + lines[where].lstrip()
    return b"\n".join(lines)


@st.composite
def manifests(draw: st.DrawFn) -> bytes:
    source = draw(st.sampled_from(sorted(EXAMPLES)))
    documents = copy.deepcopy(DOCUMENTS[source])
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(documents) - 1))
        documents[i] = draw(mutate_data(documents[i]))
    flow = draw(st.sampled_from([False, True, None]))
    text = yaml.safe_dump_all(documents, default_flow_style=flow, allow_unicode=True)
    data = text.encode("utf-8", "surrogatepass")
    for _ in range(draw(st.integers(0, 2))):
        # "flow" needs text that PyYAML can still read (a 5,000-digit integer it cannot);
        # otherwise the text stays as it is.
        with contextlib.suppress(yaml.YAMLError, ValueError):
            data = draw(mutate_text(data))
    return data


# --- the property ------------------------------------------------------------------------


def _check_problem_form(problem: Any, name: str) -> None:
    text = str(problem)
    assert "\n" not in text, text
    assert "\r" not in text, text
    assert len(text) <= LONGEST_PROBLEM, text
    prefix = f"{name}:{problem.line}: " if problem.line else f"{name}: "
    assert text.startswith(prefix), text
    assert re.search(r"\w", problem.message), text


def _templates(resource: Supervisor | Actor) -> list[ActorTemplate]:
    if isinstance(resource, Actor):
        return [resource.spec]
    found, stack = [], [resource.spec]
    while stack:
        spec: SupervisorSpec = stack.pop()
        for child in [*spec.children, *filter(None, [spec.child_template])]:
            if child.actor is not None:
                found.append(child.actor)
            if child.supervisor is not None:
                stack.append(child.supervisor)
    return found


def _check_usable(resource: Supervisor | Actor) -> None:
    """What the backends do with a resource that loaded must work."""
    dumped = resource.model_dump(by_alias=True, exclude_none=True)  # what the operator sends
    again = type(resource).model_validate(dumped)
    assert again.model_dump(by_alias=True, exclude_none=True) == dumped
    spec = (
        resource.spec.as_supervisor(resource.metadata.name)
        if isinstance(resource, Actor)
        else resource.spec
    )
    child_specs(spec)
    for template in _templates(resource):
        json.dumps(template.args, allow_nan=False)  # what a Python actor gets, as JSON
        if template.command is not None:
            argv = [*template.command, *(template.args or [])]
            env = [v.value for v in template.env if v.value is not None]
            assert all("\0" not in s for s in [*argv, *env, template.working_dir or ""])


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("manifests") / "app.yaml"


@settings(
    max_examples=1000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=manifests())
def test_every_mutated_manifest_loads_or_is_refused_in_form(scratch: Path, data: bytes) -> None:
    scratch.write_bytes(data)
    with tally("manifest loader"):
        result = load_files([scratch])
        for problem in result.problems:
            _check_problem_form(problem, str(scratch))
        assert result.problem_count >= len(result.problems)
        if not result.problems:
            assert result.resources
            local_problems(result.resources)
            for resource in result.resources:
                _check_usable(resource)


@settings(max_examples=150, deadline=None, print_blob=True)
@given(text=st.text(max_size=300))
def test_any_text_loads_or_is_refused_in_form(text: str) -> None:
    with tally("manifest loader"):
        for problem in load_text(text, "app.yaml").problems:
            _check_problem_form(problem, "app.yaml")
