"""The readiness block's shape (docs/readiness.md): what is refused, and in which words."""

from __future__ import annotations

import pytest

from rebeam.spec import load_text
from rebeam.spec.loading import format_path
from rebeam.spec.models import ActorTemplate
from rebeam.spec.readiness import entry_arguments, uses_entry

BASE = """\
apiVersion: rebeam.io/v1alpha1
kind: Supervisor
metadata: {name: s}
spec:
  children:
    - {name: a, actor: {command: [x], readiness: %s}}
"""

BAD = [
    ("{tcp: {port: 70000}}", "readiness.tcp.port", "a port is a number from 1 to 65535"),
    ("{tcp: {port: 0}}", "readiness.tcp.port", "a port is a number from 1 to 65535"),
    ("{http: {port: 80, path: healthz}}", "readiness.http.path", "must start with /"),
    ("{http: {port: 80, path: '/a b'}}", "readiness.http.path", "must start with /"),
    ("{exec: {command: []}}", "readiness.exec.command", "at least 1"),
    (
        "{notify: {}, watchdog: {interval: 0s}}",
        "readiness.watchdog.interval",
        "must be more than 0",
    ),
    ("{notify: {}, watchdog: {}}", "readiness.watchdog.interval", "required"),
    ("{notify: {sock: x}}", "readiness.notify.sock", "unknown field"),
]


def problems(readiness: str) -> list[str]:
    found = load_text(BASE % readiness).problems
    return [f"{format_path(p.path)}: {p.message}" for p in found]


@pytest.mark.parametrize(("readiness", "where", "words"), BAD)
def test_bad_blocks_are_refused_with_a_sentence(readiness: str, where: str, words: str) -> None:
    (problem,) = problems(readiness)
    assert problem.startswith(f"spec.children[0].actor.{where}: "), problem
    assert words in problem, problem


@pytest.mark.parametrize(
    "readiness",
    [
        "{spawned: {}}",
        "{notify: {}, watchdog: {interval: 5s}}",
        "{fd: {}}",
        "{tcp: {port: 8080}, watchdog: {interval: 500ms}}",
        "{http: {port: 8080}}",
        "{exec: {command: [pg_isready]}}",
    ],
)
def test_good_blocks_load(readiness: str) -> None:
    assert problems(readiness) == []


def test_the_entry_gets_the_check_and_the_command() -> None:
    template = ActorTemplate.model_validate(
        {
            "command": ["srv", "-v"],
            "args": ["--port", "80"],
            "readiness": {"http": {"port": 80}, "watchdog": {"interval": "2s"}},
        }
    )
    assert uses_entry(template)
    args = entry_arguments(template, ready_fd="3", exit_record="/x", notify_dir="/n")
    check = args[args.index("--check") + 1]
    assert check == '{"kind":"http","port":80,"path":"/healthz","watchdog":2.0}'
    assert args[args.index("--") :] == ["--", "srv", "-v", "--port", "80"]


def test_spawned_and_absent_start_as_before() -> None:
    for readiness in (None, {"spawned": {}}):
        template = ActorTemplate.model_validate({"command": ["x"], "readiness": readiness})
        assert not uses_entry(template)
