"""The SDK's modules import each other one way: no circle of imports (docs/architecture.md,
"How the code is kept livable").

Read from the source, not from an interpreter: every ``import`` counts, also one inside a
function or under ``TYPE_CHECKING``, since a late import does not make two modules any less
tangled. None is left, and a new one fails.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SDK = Path(__file__).resolve().parents[2] / "sdk"

KNOWN_CIRCLES: tuple[frozenset[str], ...] = ()
"""Circles not untangled yet (each found circle must lie within one of these): none."""


def modules(root: Path, package: str) -> dict[str, Path]:
    """Every module of ``package`` under ``root`` by its dotted name (a package by its own)."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imported(name: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The modules of ``known`` that the module ``name`` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *filter(None, [base])])
            # `from pkg import sub` imports the module pkg.sub; `from pkg import Name`, pkg.
            targets = [f"{base}.{alias.name}" for alias in node.names]
            targets = [t if t in known else base for t in targets]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a name inside a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def circles(known: dict[str, Path]) -> list[set[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    edges = {name: set(imported(name, path, known)) for name, path in known.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        for target in edges[name]:
            if target not in index:
                visit(target)
                low[name] = min(low[name], low[target])
            elif target in stack:
                low[name] = min(low[name], index[target])
        if low[name] == index[name]:
            group = {stack.pop()}
            while name not in group:
                group.add(stack.pop())
            if len(group) > 1:
                found.append(group)

    for name in sorted(known):
        if name not in index:
            visit(name)
    return found


def test_the_sdk_has_no_new_import_circle() -> None:
    found = circles(modules(SDK, "rebeam"))
    new = [sorted(c) for c in found if not any(c <= known for known in KNOWN_CIRCLES)]
    assert new == [], f"import circles: {new}"


def test_a_circle_is_found(tmp_path: Path) -> None:
    """The check does look: a late import and a type-only one close circles too, relative
    imports and ``from package import module`` are followed, and a module that only
    imports the circle is not in it."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("def f():\n    from .. import c\n")
    (package / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n"
    )
    (package / "d.py").write_text("from pkg import a\n")
    assert circles(modules(tmp_path, "pkg")) == [{"pkg.a", "pkg.sub.b", "pkg.c"}]
