"""The management protocol's refusals from ``rebeam run``: each code with its sentence, from
the CLI (one line, exit 1) and from Python (``SupervisorRefused`` carries both). The operator
answers the same requests with the same lines (tests/e2e/operator/test_operator_management.py)."""

from __future__ import annotations

import asyncio
import json

import pytest

import rebeam
from rebeam import _subjects
from rebeam._api import current_node
from tests.local.conftest import Run, StartRun

# A static supervisor holding a sleeper and a simple_one_for_one of at most one child.
MANIFEST = """\
apiVersion: rebeam.io/v1alpha1
kind: Supervisor
metadata: {name: app}
spec:
  children:
    - {name: idle, actor: {command: [sleep, '300']}}
    - name: jobs
      supervisor:
        strategy: simple_one_for_one
        maxChildren: 1
        childTemplate: {name: worker, actor: {command: [sleep], args: ['300']}}
"""

# (command, expected stderr line): every refusal a client can provoke against this tree, in
# order (None: the command succeeds).
REFUSALS: list[tuple[list[str], str | None]] = [
    (
        ["start-child", "app/jobs", '{"not": "a list"}'],
        "start-child app/jobs: the args do not fit the child template of app/jobs: cannot "
        "combine the template's args (list) with start_child's (dict): both must be lists "
        "or both mappings (bad_args)",
    ),
    (
        ["start-child", ""],
        "start-child: bad request: a path is needed, e.g. pool or shop/storage/cache (bad_request)",
    ),
    (
        ["terminate-child", "idle"],
        "terminate-child idle: bad request: 'idle' names no child: give <supervisor>/<child>, "
        "e.g. shop/cache (bad_request)",
    ),
    (
        ["start-child", "nope"],
        "start-child nope: no running supervisor at 'nope' (no_supervisor)",
    ),
    (
        ["delete-child", "nope/x"],
        "delete-child nope/x: no running supervisor at 'nope' (no_supervisor)",
    ),
    (
        ["start-child", "app"],
        "start-child app: app is not simple_one_for_one: add children to its manifest "
        "(not_simple_one_for_one)",
    ),
    (["start-child", "app/jobs"], None),  # the one child the pool may have
    (
        ["start-child", "app/jobs"],
        "start-child app/jobs: app/jobs has reached max_children (1): terminate a child first "
        "(max_children)",
    ),
    (
        ["restart-child", "app/jobs/worker-1"],
        "restart-child app/jobs/worker-1: app/jobs is simple_one_for_one: its children are "
        "started with start-child and stopped with terminate-child (simple_one_for_one)",
    ),
    (
        ["terminate-child", "app/ghost"],
        "terminate-child app/ghost: app has no child 'ghost' (not_found)",
    ),
    (
        ["restart-child", "app/idle"],
        "restart-child app/idle: app/idle is running: terminate it first (running)",
    ),
    (
        ["delete-child", "app/idle"],
        "delete-child app/idle: app/idle is running: terminate it first (running)",
    ),
]


def started(rebeam_run: StartRun) -> Run:
    run = rebeam_run(MANIFEST)
    run.events.wait("started", "idle")
    return run


def test_every_refusal_is_its_sentence_and_code_in_one_line(rebeam_run: StartRun) -> None:
    run = started(rebeam_run)
    for command, line in REFUSALS:
        result = run.rebeam(*command)
        if line is None:
            assert result.returncode == 0, result.stderr
        else:
            assert (result.returncode, result.stdout, result.stderr) == (
                1,
                "",
                f"rebeam: {line}\n",
            )


def test_python_gets_the_code_and_the_sentence(rebeam_run: StartRun) -> None:
    run = started(rebeam_run)
    info = run.instance()

    async def main() -> None:
        async with rebeam.connect(
            info["nats_url"], namespace=run.namespace, credentials=info["credentials"]
        ):
            assert await rebeam.start_child("app/jobs") == "app/jobs/worker-1#1"
            with pytest.raises(rebeam.SupervisorRefused) as refused:
                await rebeam.start_child("app/jobs")
            assert refused.value.code == "max_children"
            sentence = "app/jobs has reached max_children (1): terminate a child first"
            assert refused.value.sentence == sentence
            assert str(refused.value) == f"start-child app/jobs: {sentence} (max_children)"
            with pytest.raises(rebeam.SupervisorRefused) as missing:
                await rebeam.terminate_child("app/ghost")
            assert (missing.value.code, missing.value.sentence) == (
                "not_found",
                "app has no child 'ghost'",
            )

    asyncio.run(main())


def test_a_child_that_fails_to_start_is_start_failed(rebeam_run: StartRun) -> None:
    manifest = (
        "apiVersion: rebeam.io/v1alpha1\nkind: Supervisor\nmetadata: {name: jobs}\n"
        "spec:\n  strategy: simple_one_for_one\n"
        "  childTemplate: {name: job, actor: {command: [/nonexistent/rebeam-test]}}\n"
    )
    run = rebeam_run(manifest)
    run.wait_ready()
    result = run.rebeam("start-child", "jobs")
    assert result.returncode == 1
    assert result.stderr.startswith(
        "rebeam: start-child jobs: a new child of jobs failed to start: "
    )
    assert result.stderr.endswith(" (start_failed)\n")


def test_a_malformed_request_is_bad_request_on_the_wire(rebeam_run: StartRun) -> None:
    """What the CLI never sends: a body that is no object, a path that is no string, an
    unknown operation. Each is answered bad_request, with what is wrong."""
    run = started(rebeam_run)
    info = run.instance()

    async def ask(operation: str, body: bytes) -> dict[str, object]:
        node = current_node()
        subject = _subjects.control(run.namespace, operation, node.pid)
        msg = await node.nc.request(subject, body, 10)
        reply: dict[str, object] = json.loads(msg.data)
        return reply

    async def main() -> None:
        async with rebeam.connect(
            info["nats_url"], namespace=run.namespace, credentials=info["credentials"]
        ):
            await asks()

    async def asks() -> None:
        assert await ask("terminate-child", b"[1]") == {
            "error": "bad request: a control request is a JSON object",
            "code": "bad_request",
        }
        assert await ask("terminate-child", b'{"path": 7}') == {
            "error": "bad request: a path is needed, e.g. pool or shop/storage/cache",
            "code": "bad_request",
        }
        unknown = await ask("kill-everything", b"{}")
        assert unknown["code"] == "bad_request"
        assert str(unknown["error"]).startswith("bad request: no such management operation")

    asyncio.run(main())
