"""No ``asyncio.wait_for`` in the product code (docs/architecture.md, "How the code is kept
livable"). On Python 3.11 it answers a cancellation of its caller with the awaited result
when that result is ready in the same turn of the loop: the caller's cancellation is gone,
and a task its owner cancelled goes on (a stop that hangs, a shutdown that waits out its
deadline). ``rebeam._loop.within`` or ``asyncio.timeout`` keep the cancellation."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = (ROOT / "sdk" / "rebeam", ROOT / "operator" / "rebeam_operator")


def uses_of_wait_for(source: str) -> list[int]:
    """The lines that name asyncio's ``wait_for``: called, passed on or imported."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Attribute)
            and node.attr == "wait_for"
            and isinstance(node.value, ast.Name)
            and node.value.id == "asyncio"
        ) or (
            isinstance(node, ast.ImportFrom)
            and node.module == "asyncio"
            and any(alias.name == "wait_for" for alias in node.names)
        ):
            lines.append(node.lineno)
    return sorted(lines)


def test_the_product_code_never_uses_asyncio_wait_for() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for root in PRODUCT
        for path in sorted(root.rglob("*.py"))
        for line in uses_of_wait_for(path.read_text())
    ]
    assert found == [], "use rebeam._loop.within or asyncio.timeout instead"


def test_every_way_of_naming_it_is_seen() -> None:
    """The check above finds what it looks for (else it would pass on anything)."""
    source = (
        "import asyncio\n"
        "from asyncio import sleep, wait_for\n"
        "async def f(x):\n"
        "    await asyncio.wait_for(x, 1)\n"
        "    bounded = asyncio.wait_for\n"
    )
    assert uses_of_wait_for(source) == [2, 4, 5]
