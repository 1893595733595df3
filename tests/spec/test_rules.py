"""The cross-field rules: what OTP refuses is refused, with one message per mistake."""

from __future__ import annotations

import pytest

from rebeam.spec import load_text
from rebeam.spec.loading import format_path

BASE = """\
apiVersion: rebeam.io/v1alpha1
kind: Supervisor
metadata: {name: s}
spec:
"""


def problems(spec: str) -> list[str]:
    return [f"{format_path(p.path)}: {p.message}" for p in load_text(BASE + spec).problems]


ACTOR = "actor: {module: 'm:A'}"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (  # OTP: significant=true with a permanent child is a bad combination (§1.2)
            f"  autoShutdown: any_significant\n  children:\n"
            f"    - {{name: a, significant: true, {ACTOR}}}\n",
            "spec.children[0].significant: a significant child must be transient or "
            "temporary, not permanent",
        ),
        (  # OTP: significant children need auto_shutdown (§1.11)
            f"  children:\n    - {{name: a, restart: transient, significant: true, {ACTOR}}}\n",
            "spec.autoShutdown: significant children need autoShutdown any_significant or "
            "all_significant",
        ),
        (  # OTP newer rev: auto_shutdown with simple_one_for_one (§1.1)
            f"  strategy: simple_one_for_one\n  autoShutdown: all_significant\n"
            f"  childTemplate: {{name: t, {ACTOR}}}\n",
            "spec.autoShutdown: autoShutdown must be never with simple_one_for_one",
        ),
        (  # OTP: duplicate child names (§1.2)
            f"  children:\n    - {{name: a, {ACTOR}}}\n    - {{name: a, {ACTOR}}}\n",
            "spec.children[1].name: duplicate child name a",
        ),
        (  # OTP: a simple_one_for_one supervisor has exactly one spec (§1.2)
            "  strategy: simple_one_for_one\n",
            "spec.childTemplate: simple_one_for_one needs a childTemplate",
        ),
        (
            f"  strategy: simple_one_for_one\n  childTemplate: {{name: t, {ACTOR}}}\n"
            f"  children:\n    - {{name: a, {ACTOR}}}\n",
            "spec.children: simple_one_for_one takes a childTemplate, not children",
        ),
        (
            f"  childTemplate: {{name: t, {ACTOR}}}\n",
            "spec.childTemplate: childTemplate is only for simple_one_for_one",
        ),
        ("  maxChildren: 3\n", "spec.maxChildren: maxChildren is only for simple_one_for_one"),
        (  # OTP: period 0 is invalid (§1.1)
            "  period: 0s\n",
            "spec.period: period must be more than 0",
        ),
        (
            "  children:\n    - {name: a}\n",
            "spec.children[0]: a child needs exactly one of actor or supervisor",
        ),
        (
            "  children:\n    - {name: a, actor: {}}\n",
            "spec.children[0].actor: an actor needs exactly one of module or command",
        ),
        (
            "  children:\n    - {name: a, actor: {command: [x], args: {a: 1}}}\n",
            "spec.children[0].actor.args: the args of a command must be a list of strings",
        ),
    ],
)
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
