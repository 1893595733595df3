"""No function in the product code is longer than 60 lines (docs/architecture.md asks for
small functions with one job): a long one fails here with its file, line and length."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = (ROOT / "sdk" / "rebeam", ROOT / "operator" / "rebeam_operator")
LIMIT = 60


def long_functions(roots: tuple[Path, ...] = PRODUCT, limit: int = LIMIT) -> list[str]:
    found = []
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    length = (node.end_lineno or node.lineno) - node.lineno + 1
                    if length > limit:
                        where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                        found.append(f"{where}:{node.lineno} {node.name}: {length} lines")
    return found


def test_no_product_function_is_longer_than_60_lines() -> None:
    assert long_functions() == []


def test_a_long_function_is_found(tmp_path: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(LIMIT))
    (tmp_path / "m.py").write_text(f"def f():\n{body}")
    assert [line.split(":", 1)[1] for line in long_functions((tmp_path,), LIMIT)] == [
        f"1 f: {LIMIT + 1} lines"
    ]
