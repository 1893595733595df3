"""The parity table: each row runs on both backends (test_parity.py). To add a scenario,
append a :class:`Row`: a manifest builder (given the scratch directory its children and the
test share), its steps, and the normalized events and answers it must give on both."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from infra.hostnet import free_port
from tests.e2e.parity.harness import (
    Armed,
    Await,
    CallChild,
    Cli,
    DuringSlowStart,
    Exit,
    FailedToStart,
    Json,
    Kill,
    Marked,
    Reason,
    Row,
    Stop,
    Tree,
    Wedge,
    gate,
    python_actor,
    quitter,
    served,
    sleeper,
    supervisor,
    trigger_file,
)

STARTED_ABC = ("app/a#1 started", "app/b#1 started", "app/c#1 started")


def crash(strategy: str, after: list[str]) -> Row:
    """kill -9 b of a, b, c under ``strategy``, then stop the tree; ``after``: the events
    that follow b's exit."""
    return Row(
        name=f"crash_{strategy}",
        manifest=lambda _: supervisor(
            "app",
            [sleeper("a"), sleeper("b"), sleeper("c")],
            strategy=strategy,
            intensity=3,
            period="60s",
        ),
        steps=[Await("app/c#1 started"), Kill("app/b"), Await("app/b#2 started"), Stop()],
        events=[*STARTED_ABC, "app/b#1 exited killed", *after, "app shutdown shutdown"],
    )


CRASHES = [
    crash(
        "one_for_one",
        [
            "app/b restarting killed",
            "app/b#2 started",
            "app/c#1 exited shutdown",  # the stop, newest first
            "app/b#2 exited shutdown",
            "app/a#1 exited shutdown",
        ],
    ),
    crash(
        "one_for_all",
        [
            "app/b restarting killed",
            "app/c#1 exited shutdown",  # the others, newest first
            "app/a#1 exited shutdown",
            "app/a#2 started",  # all of them again, in start order
            "app/b#2 started",
            "app/c#2 started",
            "app/c#2 exited shutdown",
            "app/b#2 exited shutdown",
            "app/a#2 exited shutdown",
        ],
    ),
    crash(
        "rest_for_one",
        [
            "app/b restarting killed",
            "app/c#1 exited shutdown",  # the ones started after b
            "app/b#2 started",
            "app/c#2 started",
            "app/c#2 exited shutdown",
            "app/b#2 exited shutdown",
            "app/a#1 exited shutdown",
        ],
    ),
]


def shutdown_order(_: Path) -> Json:
    return supervisor(
        "app",
        [sleeper("a"), sleeper("b", shutdown="brutal_kill"), sleeper("c", shutdown="5s")],
    )


def shutdown_timeout(workdir: Path) -> Json:
    return supervisor(
        "app", [sleeper("a"), quitter(workdir, "app/b", stubborn=True, shutdown="1s")]
    )


def intensity(_: Path) -> Json:
    return supervisor("app", [sleeper("a"), sleeper("b")], intensity=1, period="60s")


def transient(workdir: Path) -> Json:
    return supervisor(
        "app", [sleeper("a"), quitter(workdir, "app/t", restart="transient")], intensity=3
    )


def temporary(workdir: Path) -> Json:
    return supervisor(
        "app",
        [
            sleeper("a"),
            quitter(workdir, "app/p", restart="temporary"),
            quitter(workdir, "app/q", restart="temporary"),
        ],
    )


def significant(auto_shutdown: str) -> Callable[[Path], Json]:
    def build(workdir: Path) -> Json:
        return supervisor(
            "app",
            [
                quitter(workdir, "app/s1", restart="transient", significant=True),
                quitter(workdir, "app/s2", restart="temporary", significant=True),
                sleeper("n"),
            ],
            autoShutdown=auto_shutdown,
        )

    return build


def dynamic(workdir: Path) -> Json:
    spec: Json = supervisor("jobs", [], strategy="simple_one_for_one", maxChildren=2)
    spec["spec"]["childTemplate"] = {
        "name": "worker",
        "actor": python_actor(workdir, "echoing", "Echo", {"base": 1}),
    }
    return spec


def static(_: Path) -> Json:
    return supervisor("app", [sleeper("idle")])


def nested(_: Path) -> Json:
    return supervisor(
        "app", [sleeper("a"), {"name": "sub", "supervisor": {"children": [sleeper("x")]}}]
    )


def slow_start(workdir: Path) -> Json:
    pool = {
        "name": "pool",
        "supervisor": {
            "strategy": "simple_one_for_one",
            "childTemplate": sleeper("worker"),
        },
    }
    return supervisor("app", [pool, gate(workdir, "gate"), sleeper("later")])


def ready_tcp(workdir: Path) -> Json:
    web = served(workdir, "app/web", "tcp", "serve", port=free_port())
    return supervisor("app", [web, sleeper("after")])


def not_ready_at_init(code: int) -> Callable[[Path], Json]:
    def build(workdir: Path) -> Json:
        db = served(workdir, "app/db", "tcp", str(code), port=free_port())
        return supervisor("app", [sleeper("a"), db, sleeper("c")])

    return build


def not_ready_in_a_restart(workdir: Path) -> Json:
    db = served(workdir, "app/db", "tcp", "once", port=free_port())
    return supervisor("app", [sleeper("a"), db], intensity=2, period="60s")


def start_timeout(workdir: Path) -> Json:
    slow = served(workdir, "app/slow", "tcp", "hang", port=free_port(), startTimeout="2s")
    return supervisor("app", [sleeper("a"), slow, sleeper("c")])


def watchdog(kind: str) -> Callable[[Path], Json]:
    def build(workdir: Path) -> Json:
        port = free_port() if kind == "tcp" else 0
        return supervisor(
            "app", [served(workdir, "app/w", kind, "serve", port=port, watchdog="1s")]
        )

    return build


def not_ready(code: int) -> str:
    return f"crash (NotReady: exited before it was ready (exit code {code}))"


def fails_at_init(code: int) -> Row:
    return Row(
        name=f"readiness_exit_{code}_before_ready_fails_the_start_at_init",
        manifest=not_ready_at_init(code),
        steps=[FailedToStart(), Reason("app/db#1 start_failed crash")],
        events=["app/a#1 started", "app/db#1 start_failed crash", "app/a#1 exited shutdown"],
        answers=[
            f"app failed to start: child db: {not_ready(code)}",
            f"app/db#1 start_failed crash: {not_ready(code)}",
        ],
    )


def watchdog_kills(kind: str) -> Row:
    return Row(
        name=f"readiness_{kind}_watchdog_kills_and_restarts",
        manifest=watchdog(kind),
        steps=[
            Await("app/w#1 started"),
            Wedge("app/w"),
            Await("app/w#2 started"),
            Reason("app/w#1 exited crash"),
            Stop(),
        ],
        events=[
            "app/w#1 started",
            "app/w#1 exited crash",
            "app/w restarting crash",
            "app/w#2 started",
            "app/w#2 exited shutdown",
            "app shutdown shutdown",
        ],
        answers=["app/w#1 exited crash: crash (Watchdog: did not answer its watchdog within 1s)"],
    )


READINESS = [
    Row(
        name="readiness_tcp_started_once_the_port_accepts",
        manifest=ready_tcp,
        steps=[
            Marked("app/web#1 started", f"{trigger_file(Path(), 'app/web')}.up"),
            Await("app/after#1 started"),
            Stop(),
        ],
        events=[
            "app/web#1 started",
            "app/after#1 started",
            "app/after#1 exited shutdown",
            "app/web#1 exited shutdown",
            "app shutdown shutdown",
        ],
        answers=["app_web.exit.up made before 'app/web#1 started': True"],
    ),
    fails_at_init(3),
    fails_at_init(0),
    Row(
        name="readiness_exit_before_ready_in_a_restart_is_retried_until_gave_up",
        manifest=not_ready_in_a_restart,
        steps=[
            Await("app/db#1 started"),
            Exit("app/db", 3),
            Await("app shutdown shutdown"),
            Reason("app/db#2 start_failed crash"),
        ],
        events=[
            "app/a#1 started",
            "app/db#1 started",
            "app/db#1 exited crash",
            "app/db restarting crash",
            "app/db#2 start_failed crash",
            "app/db restarting",  # a retry: each counts, 3 restarts in 60s exceed intensity 2
            "app/db#3 start_failed crash",
            "app/db gave_up",
            "app/a#1 exited shutdown",
            "app shutdown shutdown",
        ],
        answers=[f"app/db#2 start_failed crash: {not_ready(3)}"],
    ),
    Row(
        name="readiness_start_timeout_fails_the_start",
        manifest=start_timeout,
        steps=[FailedToStart(), Reason("app/slow#1 start_failed crash")],
        events=["app/a#1 started", "app/slow#1 start_failed crash", "app/a#1 exited shutdown"],
        answers=[
            "app failed to start: child slow: crash (StartTimeout: not ready within "
            "startTimeout 2s)",
            "app/slow#1 start_failed crash: crash (StartTimeout: not ready within startTimeout 2s)",
        ],
    ),
    watchdog_kills("notify"),
    watchdog_kills("tcp"),
]

# Lines of `rebeam tree --json` (harness.tree_lines), and the refusal of restart-child and
# delete-child to a simple_one_for_one supervisor.
TOP = 'kind="supervisor" strategy="one_for_one" state="running" restarts=0 intensity=3 period=5.0'
POOL = (
    'name="{name}" kind="supervisor" state="running" incarnation=1 pid=null starts=1'
    ' last_exit=null strategy="simple_one_for_one" restarts=0 intensity=3 period=5.0'
)
SIMPLE = (
    "jobs is simple_one_for_one: its children are started with start-child and stopped"
    " with terminate-child (simple_one_for_one)"
)


def running_actor(name: str, incarnation: int = 1, last_exit: str | None = None) -> str:
    return (
        f'name="{name}" kind="actor" state="running" incarnation={incarnation} pid="<pid>"'
        f" starts={incarnation} last_exit={json.dumps(last_exit)}"
    )


ROWS: list[Row] = [
    *CRASHES,
    Row(
        name="stop_in_reverse_order_with_each_shutdown",
        manifest=shutdown_order,
        steps=[Await("app/c#1 started"), Stop()],
        events=[
            *STARTED_ABC,
            "app/c#1 exited shutdown",
            "app/b#1 exited killed",
            "app/a#1 exited shutdown",
            "app shutdown shutdown",
        ],
    ),
    Row(
        name="shutdown_timeout_kills",
        manifest=shutdown_timeout,
        steps=[Await("app/b#1 started"), Armed("app/b"), Stop()],
        events=[
            "app/a#1 started",
            "app/b#1 started",
            "app/b#1 exited killed",
            "app/a#1 exited shutdown",
            "app shutdown shutdown",
        ],
    ),
    Row(
        name="intensity_exceeded_gives_up",
        manifest=intensity,
        steps=[
            Await("app/b#1 started"),
            Kill("app/b"),
            Await("app/b#2 started"),
            Kill("app/b"),
            Await("app shutdown shutdown"),
        ],
        events=[
            "app/a#1 started",
            "app/b#1 started",
            "app/b#1 exited killed",
            "app/b restarting killed",
            "app/b#2 started",
            "app/b#2 exited killed",
            "app/b gave_up killed",
            "app/a#1 exited shutdown",
            "app shutdown shutdown",
        ],
    ),
    Row(
        name="transient_restarted_on_a_crash_kept_on_a_normal_exit",
        manifest=transient,
        steps=[
            Await("app/t#1 started"),
            Exit("app/t", 3),
            Await("app/t#2 started"),
            Exit("app/t", 0),
            Cli(("restart-child", "app/t")),
            Await("app/t#3 started"),
            Stop(),
        ],
        events=[
            "app/a#1 started",
            "app/t#1 started",
            "app/t#1 exited crash",
            "app/t restarting crash",
            "app/t#2 started",
            "app/t#2 exited normal",
            "app/t#3 started",
            "app/t#3 exited shutdown",
            "app/a#1 exited shutdown",
            "app shutdown shutdown",
        ],
        answers=["0 app/t#3"],
    ),
    Row(
        name="temporary_never_restarted",
        manifest=temporary,
        steps=[
            Await("app/q#1 started"),
            Exit("app/p", 0),
            Exit("app/q", 3),
            Cli(("restart-child", "app/p")),
            Stop(),
        ],
        events=[
            "app/a#1 started",
            "app/p#1 started",
            "app/q#1 started",
            "app/p#1 exited normal",
            "app/q#1 exited crash",
            "app/a#1 exited shutdown",
            "app shutdown shutdown",
        ],
        answers=["1 rebeam: restart-child app/p: app has no child 'p' (not_found)"],
    ),
    Row(
        name="any_significant_ends_the_supervisor",
        manifest=significant("any_significant"),
        steps=[Await("app/n#1 started"), Exit("app/s1", 0), Await("app shutdown shutdown")],
        events=[
            "app/s1#1 started",
            "app/s2#1 started",
            "app/n#1 started",
            "app/s1#1 exited normal",
            "app/n#1 exited shutdown",
            "app/s2#1 exited shutdown",
            "app shutdown shutdown",
        ],
    ),
    Row(
        name="all_significant_waits_for_the_last",
        manifest=significant("all_significant"),
        steps=[
            Await("app/n#1 started"),
            Exit("app/s2", 3),
            Exit("app/s1", 3),  # a transient crash is restarted: still there
            Await("app/s1#2 started"),
            Exit("app/s1", 0),
            Await("app shutdown shutdown"),
        ],
        events=[
            "app/s1#1 started",
            "app/s2#1 started",
            "app/n#1 started",
            "app/s2#1 exited crash",
            "app/s1#1 exited crash",
            "app/s1 restarting crash",
            "app/s1#2 started",
            "app/s1#2 exited normal",
            "app/n#1 exited shutdown",
            "app shutdown shutdown",
        ],
    ),
    Row(
        name="dynamic_children_and_their_answers",
        manifest=dynamic,
        steps=[
            Cli(("start-child", "jobs", '{"job": 1}')),
            Cli(("start-child", "jobs", '{"job": 2}')),
            Cli(("start-child", "jobs")),
            CallChild("jobs/worker-1", {"q": 1}),
            Cli(("restart-child", "jobs/worker-2")),
            Cli(("delete-child", "jobs/worker-2")),
            Cli(("terminate-child", "jobs/worker-1")),
            Cli(("terminate-child", "jobs/worker-9")),
            Tree(),
            Stop("jobs"),
        ],
        events=[
            "jobs/worker-1#1 started",
            "jobs/worker-2#1 started",
            "jobs/worker-1#1 exited shutdown",
            "jobs/worker-2#1 exited shutdown",
            "jobs shutdown shutdown",
        ],
        answers=[
            "0 jobs/worker-1#1",
            "0 jobs/worker-2#1",
            "1 rebeam: start-child jobs: jobs has reached max_children (2): terminate a child"
            " first (max_children)",
            '0 {"init": {"base": 1, "job": 1}, "call": {"q": 1}}',
            f"1 rebeam: restart-child jobs/worker-2: {SIMPLE}",
            f"1 rebeam: delete-child jobs/worker-2: {SIMPLE}",
            "0 ok",
            "1 rebeam: terminate-child jobs/worker-9: jobs has no child 'worker-9' (not_found)",
            'jobs: kind="supervisor" strategy="simple_one_for_one" state="running" restarts=0'
            " intensity=3 period=5.0",
            f"jobs/worker-2: {running_actor('worker-2')}",
        ],
    ),
    Row(
        name="static_children_answers",
        manifest=static,
        steps=[
            Await("app/idle#1 started"),
            Cli(("terminate-child", "app/ghost")),
            Cli(("restart-child", "app/idle")),
            Cli(("delete-child", "app/idle")),
            Cli(("terminate-child", "app/idle")),
            Cli(("restart-child", "app/idle")),
            Tree(),
            Stop(),
        ],
        events=[
            "app/idle#1 started",
            "app/idle#1 exited shutdown",
            "app/idle#2 started",
            "app/idle#2 exited shutdown",
            "app shutdown shutdown",
        ],
        answers=[
            "1 rebeam: terminate-child app/ghost: app has no child 'ghost' (not_found)",
            "1 rebeam: restart-child app/idle: app/idle is running: terminate it first (running)",
            "1 rebeam: delete-child app/idle: app/idle is running: terminate it first (running)",
            "0 ok",
            "0 app/idle#2",
            f"app: {TOP}",
            f"app/idle: {running_actor('idle', incarnation=2, last_exit='shutdown')}",
        ],
    ),
    Row(
        name="nested_supervisor_exits_before_its_parent_sees_it",
        manifest=nested,
        steps=[Await("app/sub#1 started"), Stop()],
        events=[
            "app/a#1 started",
            "app/sub/x#1 started",  # a supervisor has started once its children have
            "app/sub#1 started",
            "app/sub/x#1 exited shutdown",
            "app/sub shutdown shutdown",
            "app/sub#1 exited shutdown",
            "app/a#1 exited shutdown",
            "app shutdown shutdown",
        ],
    ),
    Row(
        name="requests_during_a_slow_start_wait_for_it",
        manifest=slow_start,
        steps=[DuringSlowStart("app/pool"), Stop()],
        events=[
            "app/pool#1 started",
            "app/pool/worker-1#1 started",
            "app/gate#1 started",
            "app/later#1 started",
            "app/later#1 exited shutdown",
            "app/gate#1 exited shutdown",
            "app/pool/worker-1#1 exited shutdown",
            "app/pool shutdown shutdown",
            "app/pool#1 exited shutdown",
            "app shutdown shutdown",
        ],
        answers=[
            "tree with a timeout: no answer within 0.5s",
            "start_child app/pool/worker-1#1",  # answered while the gate held the start
            "tree answered early: False",  # the tree request waited for it
            f"app: {TOP}",
            f"app/pool: {POOL.format(name='pool')}",
            f"app/pool/worker-1: {running_actor('worker-1')}",
            f"app/gate: {running_actor('gate')}",
            f"app/later: {running_actor('later')}",
        ],
    ),
    *READINESS,
]
