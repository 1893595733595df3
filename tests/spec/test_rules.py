"""The cross-field rules: what OTP refuses is refused, with one message per mistake."""

from __future__ import annotations

import pytest

from rebeam.spec import load_text
from rebeam.spec.loading import format_path
from tests.spec.rule_cases import ACTOR, RULE_CASES

BASE = """\
apiVersion: rebeam.io/v1alpha1
kind: Supervisor
metadata: {name: s}
spec:
"""


def problems(spec: str) -> list[str]:
    return [f"{format_path(p.path)}: {p.message}" for p in load_text(BASE + spec).problems]


@pytest.mark.parametrize(("spec", "expected"), RULE_CASES)
def test_rule(spec: str, expected: str) -> None:
    assert problems(spec) == [expected]


def test_rules_apply_inside_nested_supervisors() -> None:
    spec = (
        "  children:\n    - name: sub\n      supervisor:\n        children:\n"
        "          - {name: x}\n"
    )
    assert problems(spec) == [
        "spec.children[0].supervisor.children[0]: a child needs exactly one of actor or supervisor"
    ]


def test_nesting_is_limited() -> None:
    def nest(depth: int) -> str:
        if depth == 0:
            return f"{{children: [{{name: leaf, {ACTOR}}}]}}"
        return f"{{children: [{{name: n{depth}, supervisor: {nest(depth - 1)}}}]}}"

    ok = load_text(BASE + f"  children: [{{name: top, supervisor: {nest(3)}}}]\n")
    assert ok.problems == []
    too_deep = problems(f"  children: [{{name: top, supervisor: {nest(4)}}}]\n")
    assert len(too_deep) == 1
    assert too_deep[0].endswith("supervisors nest at most 4 levels deep")


def test_every_rule_has_a_python_check_and_a_message() -> None:
    from rebeam.spec.rules import RULES

    for rules in RULES.values():
        for rule in rules:
            assert callable(rule.check)
            assert rule.message
