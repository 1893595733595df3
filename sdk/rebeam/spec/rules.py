"""The rules that relate manifest fields to each other — each written once for Python and once
as CEL for the Kubernetes API server, side by side, with one message for both.

``rebeam validate`` / ``rebeam run`` check them with :func:`problems`; the CRD generator
emits them as ``x-kubernetes-validations``. A user therefore gets the same sentence for the
same mistake on a laptop and from ``kubectl apply``. ``tests/spec`` checks every rule's
Python side, and the e2e tests check the CEL side against a real API server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel

from rebeam.spec.models import (
    MAX_NESTING,
    Actor,
    ActorSpec,
    ActorTemplate,
    Child,
    Readiness,
    Supervisor,
    SupervisorSpec,
)
from rebeam.supervision.childspec import AutoShutdown, RestartType, Strategy

__all__ = ["RULES", "Problem", "Rule", "problems"]


@dataclass(frozen=True)
class Rule:
    """``check(model)`` is True when the model is fine; ``cel`` says the same to the API
    server. ``field`` is where the problem is reported, relative to the model.

    CEL sees the object as sent, after the schema's defaults: a list with no default (such as
    ``children``) may be absent, so rules test ``has()`` before they look inside."""

    check: Callable[[Any], bool]
    cel: str | None  # None: Python only (the schema already says it to the API server)
    message: str
    field: str | None = None


@dataclass(frozen=True)
class Problem:
    path: tuple[str | int, ...]
    message: str


SIMPLE = Strategy.SIMPLE_ONE_FOR_ONE


def _is_simple(spec: SupervisorSpec) -> bool:
    return spec.strategy is SIMPLE


_KINDS_CEL: Final = (
    "[has(self.spawned), has(self.notify), has(self.fd), has(self.tcp), "
    "has(self.http), has(self.exec)]"
)

RULES: Final[dict[type[BaseModel], list[Rule]]] = {
    Readiness: [
        Rule(
            lambda r: r.kind is not None,
            f"{_KINDS_CEL}.filter(k, k).size() == 1",
            "readiness needs exactly one of spawned, notify, fd, tcp, http or exec",
        ),
        Rule(
            lambda r: r.watchdog is None or r.kind in ("notify", "tcp", "http", "exec"),
            "!has(self.watchdog) || has(self.notify) || has(self.tcp) || has(self.http) "
            "|| has(self.exec)",
            "a watchdog needs notify, tcp, http or exec readiness",
            "watchdog",
        ),
    ],
    ActorTemplate: [
        Rule(
            lambda a: a.readiness is None or a.command is not None,
            "!has(self.readiness) || has(self.command)",
            "readiness is for a command; a Python actor is ready when its init returns",
            "readiness",
        ),
        Rule(
            lambda a: (a.module is None) != (a.command is None),
            "has(self.module) != has(self.command)",
            "an actor needs exactly one of module or command",
        ),
        Rule(
            lambda a: (
                a.command is None
                or a.args is None
                or (isinstance(a.args, list) and all(isinstance(x, str) for x in a.args))
            ),
            # args may hold any JSON (a module's init args), so the schema leaves it untyped,
            # and CEL cannot see untyped fields: the operator checks this one.
            None,
            "the args of a command must be a list of strings",
            "args",
        ),
        Rule(
            lambda a: (
                a.command is None
                or not isinstance(a.args, list)
                or not any(isinstance(x, str) and "\0" in x for x in a.args)
            ),
            None,  # as above: CEL cannot see args; the operator checks this one
            "the args of a command must not contain a NUL character (no program argument can "
            "hold one)",
            "args",
        ),
    ],
    Child: [
        Rule(
            lambda c: (c.actor is None) != (c.supervisor is None),
            "has(self.actor) != has(self.supervisor)",
            "a child needs exactly one of actor or supervisor",
        ),
        Rule(
            lambda c: not (c.significant and c.restart is RestartType.PERMANENT),
            "!self.significant || self.restart != 'permanent'",
            "a significant child must be transient or temporary, not permanent",
            "significant",
        ),
    ],
    SupervisorSpec: [
        Rule(
            lambda s: not _is_simple(s) or s.child_template is not None,
            "self.strategy != 'simple_one_for_one' || has(self.childTemplate)",
            "simple_one_for_one needs a childTemplate",
            "childTemplate",
        ),
        Rule(
            lambda s: not _is_simple(s) or not s.children,
            "self.strategy != 'simple_one_for_one' || !has(self.children) "
            "|| size(self.children) == 0",
            "simple_one_for_one takes a childTemplate, not children",
            "children",
        ),
        Rule(
            lambda s: _is_simple(s) or s.child_template is None,
            "self.strategy == 'simple_one_for_one' || !has(self.childTemplate)",
            "childTemplate is only for simple_one_for_one",
            "childTemplate",
        ),
        Rule(
            lambda s: _is_simple(s) or s.max_children is None,
            "self.strategy == 'simple_one_for_one' || !has(self.maxChildren)",
            "maxChildren is only for simple_one_for_one",
            "maxChildren",
        ),
        Rule(
            lambda s: not _is_simple(s) or s.auto_shutdown is AutoShutdown.NEVER,
            "self.strategy != 'simple_one_for_one' || self.autoShutdown == 'never'",
            "autoShutdown must be never with simple_one_for_one",
            "autoShutdown",
        ),
        Rule(
            lambda s: (
                s.auto_shutdown is not AutoShutdown.NEVER
                or not any(c.significant for c in s.children)
            ),
            "self.autoShutdown != 'never' || !has(self.children) "
            "|| self.children.all(c, !c.significant)",
            "significant children need autoShutdown any_significant or all_significant",
            "autoShutdown",
        ),
        Rule(
            lambda s: s.period > 0,
            None,  # a duration is a string to CEL; the operator refuses 0 through this rule
            "period must be more than 0",
            "period",
        ),
    ],
}
RULES[ActorSpec] = RULES[ActorTemplate]


def problems(resource: Supervisor | Actor) -> list[Problem]:
    """Every rule broken anywhere in ``resource``, with its field path."""
    found: list[Problem] = []
    for path, model in _walk(resource, ()):
        for rule in _rules_for(model):
            if not rule.check(model):
                where = (*path, rule.field) if rule.field else path
                found.append(Problem(where, rule.message))
    found += _nesting_problems(resource)
    found += _duplicate_names(resource)
    return found


def _duplicate_names(resource: Supervisor | Actor) -> list[Problem]:
    """Child names are unique per supervisor (OTP's duplicate_child_name). The CRD says the
    same with a list keyed by name, so this has no CEL twin."""
    found: list[Problem] = []
    for path, model in _walk(resource, ()):
        if isinstance(model, SupervisorSpec):
            seen: set[str] = set()
            for i, child in enumerate(model.children):
                if child.name in seen:
                    found.append(
                        Problem(
                            (*path, "children", i, "name"), f"duplicate child name {child.name}"
                        )
                    )
                seen.add(child.name)
    return found


def _rules_for(model: BaseModel) -> list[Rule]:
    return RULES.get(type(model), [])


def _walk(
    model: BaseModel, path: tuple[str | int, ...]
) -> Iterator[tuple[tuple[str | int, ...], BaseModel]]:
    yield path, model
    for name, field in type(model).model_fields.items():
        key = field.alias or name
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield from _walk(value, (*path, key))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from _walk(item, (*path, key, i))


def _nesting_problems(resource: Supervisor | Actor) -> list[Problem]:
    if not isinstance(resource, Supervisor):
        return []
    found: list[Problem] = []

    def visit(spec: SupervisorSpec, path: tuple[str | int, ...], depth: int) -> None:
        children = [*spec.children, *([spec.child_template] if spec.child_template else [])]
        for i, child in enumerate(children):
            if child.supervisor is None:
                continue
            key: tuple[str | int, ...] = (
                ("children", i) if i < len(spec.children) else ("childTemplate",)
            )
            child_path = (*path, *key, "supervisor")
            if depth >= MAX_NESTING:
                found.append(
                    Problem(child_path, f"supervisors nest at most {MAX_NESTING} levels deep")
                )
            else:
                visit(child.supervisor, child_path, depth + 1)

    visit(resource.spec, ("spec",), 0)
    return found
