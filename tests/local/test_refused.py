"""Invalid manifests are refused before anything starts."""

from __future__ import annotations

from tests.local.conftest import StartRun, supervisor


def test_an_invalid_manifest_starts_nothing_and_exits_two(rebeam_run: StartRun) -> None:
    children = "    - {name: a, restart: sometimes, actor: {command: [sleep, '300']}}\n"
    run = rebeam_run(supervisor("s", children))
    assert run.exit_code() == 2
    err = run.stderr()
    assert "spec.children[0].restart: must be one of permanent, transient, temporary" in err
    assert "rebeam: nothing was started" in err
    assert not run.events.path.exists() or run.events.poll() == []


def test_kubernetes_only_fields_are_refused_locally(rebeam_run: StartRun) -> None:
    children = (
        "    - name: a\n"
        "      actor:\n"
        "        command: [sleep, '300']\n"
        "        env: [{name: DSN, valueFrom: {secretKeyRef: {name: db, key: dsn}}}]\n"
    )
    run = rebeam_run(supervisor("s", children))
    assert run.exit_code() == 2
    assert "spec.children[0].actor.env[0].valueFrom: only on Kubernetes" in run.stderr()


def test_a_start_failure_at_init_stops_what_started_and_exits_one(rebeam_run: StartRun) -> None:
    children = (
        "    - {name: a, actor: {command: [sleep, '300']}}\n"
        "    - {name: b, actor: {command: [/no/such/program]}}\n"
        "    - {name: c, actor: {command: [sleep, '300']}}\n"
    )
    run = rebeam_run(supervisor("s", children))
    assert run.exit_code() == 1
    assert "s failed to start: child b: crash (FileNotFoundError" in run.stderr()
    assert run.events.lines() == ["started a#1", "start_failed b#1", "exited a#1"]
