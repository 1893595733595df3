"""Several ``rebeam run``s of one namespace: each has an instance file of its own, never
overwritten; ``rebeam runs`` lists them; commands say which one they talk to and take
``--run ID``; the end of one run does not hide the other; each run says its NATS URL."""

from __future__ import annotations

import json
import signal

from tests.local.conftest import SLEEPER, StartRun, supervisor


def test_two_runs_of_one_namespace(rebeam_run: StartRun) -> None:
    first = rebeam_run(supervisor("first", f"    - {{name: a, actor: {SLEEPER}}}\n"))
    first.events.wait("started", "a")
    one = first.instance()
    second = rebeam_run(
        supervisor("second", f"    - {{name: b, actor: {SLEEPER}}}\n"), namespace=first.namespace
    )
    second.events.wait("started", "b")
    two = second.instance()
    assert first.instance() == one  # its file is still its own
    assert one["run_id"] != two["run_id"]

    listed = first.rebeam("runs", "--json")
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    assert [(r["run_id"], r["nats_url"]) for r in runs] == [
        (one["run_id"], one["nats_url"]),
        (two["run_id"], two["nats_url"]),
    ]
    assert "credentials" not in listed.stdout
    table = first.rebeam("runs").stdout.splitlines()
    assert table[0].split() == ["RUN", "NAMESPACE", "PID", "NATS", "STARTED"]
    assert table[2].split()[:5] == [
        "*",
        two["run_id"],
        first.namespace,
        str(two["pid"]),
        two["nats_url"],
    ]

    # Without --run: the run started last, and a line on stderr saying so and how to pick.
    latest = first.rebeam("tree", "--json")
    assert latest.returncode == 0, latest.stderr
    assert [root["path"] for root in json.loads(latest.stdout)] == ["second"]
    assert f"talking to run {two['run_id']}" in latest.stderr
    assert "--run ID" in latest.stderr
    picked = first.rebeam("tree", "--json", "--run", one["run_id"][:4])
    assert picked.returncode == 0, picked.stderr
    assert [root["path"] for root in json.loads(picked.stdout)] == ["first"]
    assert picked.stderr == ""
    unknown = first.rebeam("tree", "--run", "nothing")
    assert unknown.returncode == 1
    assert "no rebeam run 'nothing' is running" in unknown.stderr

    # The second ends: the first is still found, and is the only one.
    second.signal(signal.SIGTERM)
    assert second.exit_code() == 0
    left = first.rebeam("tree", "--json")
    assert left.returncode == 0, left.stderr
    assert [root["path"] for root in json.loads(left.stdout)] == ["first"]
    assert left.stderr == ""
    assert second.instance_files() == [first.instance_file()]

    first.signal(signal.SIGTERM)
    assert first.exit_code() == 0
    for run, info in ((first, one), (second, two)):
        said = run.stderr()
        assert (
            f"run {info['run_id']} serves namespace {run.namespace!r} with NATS at "
            f"{info['nats_url']}"
        ) in said, said
    assert first.instance_files() == []
