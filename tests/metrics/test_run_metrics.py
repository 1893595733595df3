"""``rebeam run --metrics``: one endpoint for the whole tree, scraped while it runs (a real
``rebeam run``, its private nats-server, real actor processes and crashes)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from tests.local.conftest import COUNTER, StartRun, supervisor
from tests.local.conftest import rebeam_run as rebeam_run  # the fixture, shared
from tests.metrics.conftest import Samples, metrics_url, scrape, value

ACTORS = (
    COUNTER
    + """
class Crashy(Counter):
    async def handle_call(self, msg, from_):
        if msg == "crash":
            raise RuntimeError("on purpose")
        return await super().handle_call(msg, from_)
    async def handle_cast(self, msg):
        self.n += 1

class Flappy(rebeam.Actor):
    # Crashes right after init until its 51st incarnation, which stays.
    async def init(self, args):
        if self.pid.incarnation <= 50:
            self.send_after(0, "die")
    async def handle_info(self, msg):
        raise RuntimeError("flapping")
"""
)
DEADLINE = 60.0


def scrape_until(url: str, holds: Callable[[Samples], bool], what: str) -> Samples:
    """Scrape until ``holds``; the deadline is generous, as every wait here is an event."""
    deadline = time.monotonic() + DEADLINE
    while True:
        seen = scrape(url)
        if holds(seen):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"no scrape showed {what} within {DEADLINE}s")
        time.sleep(0.1)


def test_the_trees_metrics_move_with_calls_casts_and_a_restart(
    rebeam_run: StartRun, tmp_path: Path
) -> None:
    (tmp_path / "counting.py").write_text(ACTORS)
    children = (
        "    - {name: counter, actor: {module: 'counting:Crashy', register: counter}}\n"
        "    - {name: idle, actor: {command: [sleep, '300']}}\n"
    )
    run = rebeam_run(supervisor("app", children, intensity=5), "--metrics", "0")
    url = metrics_url(run.process)
    run.events.wait("started", "idle")
    assert run.rebeam("call", "counter", "{}").returncode == 0
    assert run.rebeam("cast", "counter", '"y"').returncode == 0
    counter = {"namespace": run.namespace, "supervisor": "app", "child": "counter"}
    seen = scrape_until(
        url,
        lambda s: value(s, "rebeam_messages_received_total", kind="cast", **counter) == 1,
        "the cast",
    )
    assert value(seen, "rebeam_messages_received_total", kind="call", **counter) == 1
    assert value(seen, "rebeam_handler_seconds_count", kind="call", **counter) == 1
    assert value(seen, "rebeam_supervisor_child_starts_total", supervisor="app") == 2
    assert value(seen, "rebeam_supervisor_children", supervisor="app", state="running") == 2
    # The command child answers no scrape, and is not asked: nothing went unanswered.
    assert value(seen, "rebeam_scrape_unanswered_total") == 0
    assert value(seen, "rebeam_scrape_answered") == 1

    assert run.rebeam("call", "counter", '"crash"').returncode != 0
    run.events.wait("started", "counter", incarnation=2)
    seen = scrape_until(
        url,
        lambda s: (
            value(s, "rebeam_supervisor_restarts_total", supervisor="app") == 1
            and value(s, "rebeam_scrape_answered") == 1
        ),
        "the restart",
    )
    assert value(seen, "rebeam_supervisor_child_exits_total", reason="crash") == 1
    assert value(seen, "rebeam_supervisor_child_starts_total", supervisor="app") == 3
    # The new incarnation continues the child's series, from zero.
    assert value(seen, "rebeam_messages_received_total", kind="call", **counter) == 0


def test_a_child_restarted_50_times_keeps_its_series_count(
    rebeam_run: StartRun, tmp_path: Path
) -> None:
    (tmp_path / "counting.py").write_text(ACTORS)
    children = (
        "    - {name: steady, actor: {module: 'counting:Counter'}}\n"
        "    - {name: flappy, actor: {module: 'counting:Flappy'}}\n"
    )
    run = rebeam_run(supervisor("app", children, intensity=100, period=60), "--metrics", "0")
    url = metrics_url(run.process)
    run.events.wait("started", "flappy", incarnation=51, timeout=DEADLINE * 2)
    seen = scrape_until(url, lambda s: value(s, "rebeam_scrape_answered") == 2, "both actors")
    assert value(seen, "rebeam_supervisor_restarts_total", supervisor="app") == 50

    def series(child: str) -> set[tuple[str, frozenset[tuple[str, str]]]]:
        return {
            (name, labels - {("child", child)})
            for name, labels in seen
            if ("child", child) in labels
        }

    assert series("flappy") == series("steady")
    assert len(series("flappy")) > 20


def test_a_dynamic_pool_has_one_series_set_per_template(
    rebeam_run: StartRun, tmp_path: Path
) -> None:
    (tmp_path / "counting.py").write_text(ACTORS)
    manifest = (
        "apiVersion: rebeam.io/v1alpha1\nkind: Supervisor\nmetadata: {name: pool}\nspec:\n"
        "  strategy: simple_one_for_one\n  maxChildren: 3\n"
        "  childTemplate: {name: worker, actor: {module: 'counting:Counter'}}\n"
    )
    run = rebeam_run(manifest, "--metrics", "0")
    url = metrics_url(run.process)
    run.wait_ready()
    for _ in range(3):
        started = run.rebeam("start-child", "pool", "{}")
        assert started.returncode == 0, started.stderr
    seen = scrape_until(url, lambda s: value(s, "rebeam_scrape_answered") == 3, "3 workers")
    children = {dict(labels).get("child") for _, labels in seen} - {None}
    assert children == {"worker"}
    assert value(seen, "rebeam_supervisor_children", supervisor="pool", state="running") == 3


def test_a_bad_metrics_address_is_refused_before_anything_starts(
    rebeam_run: StartRun, tmp_path: Path
) -> None:
    run = rebeam_run(supervisor("app", "    - {name: idle, actor: {command: [sleep, '300']}}\n"),
                     "--metrics", "localhost:http")  # fmt: skip
    assert run.exit_code() == 2
    err = run.stderr()
    assert "--metrics wants [HOST:]PORT, not 'localhost:http'" in err
    assert "nothing was started" in err
    assert run.events.poll() == []


def test_a_give_up_is_counted_for_the_supervisor_that_gave_up(rebeam_run: StartRun) -> None:
    once = "{command: [sh, -c, 'if [ -e ran ]; then exec sleep 300; fi; touch ran; exit 7']}"
    children = (
        "    - name: inner\n"
        "      supervisor:\n"
        "        intensity: 0\n"
        f"        children: [{{name: w, actor: {once}}}]\n"
    )
    run = rebeam_run(supervisor("root", children, intensity=5), "--metrics", "0")
    url = metrics_url(run.process)
    run.events.wait("gave_up", "w")
    seen = scrape_until(
        url,
        lambda s: value(s, "rebeam_supervisor_restarts_total", supervisor="root") == 1,
        "root restarting inner",
    )
    assert value(seen, "rebeam_supervisor_give_ups_total", supervisor="root/inner") == 1
    assert value(seen, "rebeam_supervisor_give_ups_total", supervisor="root") == 0
    exits = {"supervisor": "root/inner", "reason": "crash"}
    assert value(seen, "rebeam_supervisor_child_exits_total", **exits) == 1
