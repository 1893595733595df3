"""Every HTTP surface of ``rebeam observe`` refuses bad input with a clear status, counts
it, and logs it in a line at a bounded rate (never a traceback); and the command itself
says in one line what is wrong."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from tests.local.conftest import COUNTER, REBEAM, StartRun, supervisor
from tests.observer.conftest import Observe, start_observer, stop_process

TREE = supervisor("shop", "    - {name: counter, actor: {module: 'counting:Counter'}}\n")


class Client:
    """Plain HTTP to the observer, no redirects followed, the session cookie kept."""

    def __init__(self, observer: Observe) -> None:
        host, port = observer.base.removeprefix("http://").rstrip("/").split(":")
        self.host, self.port = host, int(port)
        self.cookie = ""
        self.csrf = ""

    def ask(
        self, method: str, path: str, body: bytes | None = None, **headers: str
    ) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            if self.cookie:
                headers.setdefault("Cookie", self.cookie)
            conn.request(method, path, body=body, headers=headers)
            reply = conn.getresponse()
            return reply.status, dict(reply.getheaders()), reply.read().decode()
        finally:
            conn.close()

    def log_in(self, token: str) -> None:
        status, headers, _ = self.ask("GET", f"/?token={token}")
        assert status == 303
        assert "HttpOnly" in headers["Set-Cookie"]
        assert "SameSite=Strict" in headers["Set-Cookie"]
        self.cookie = headers["Set-Cookie"].split(";", 1)[0]
        status, _, page = self.ask("GET", "/")
        assert status == 200
        found = re.search(r'name="csrf" content="([^"]+)"', page)
        assert found
        self.csrf = found.group(1)

    def act(self, op: str, body: bytes, **headers: str) -> tuple[int, dict[str, Any]]:
        headers.setdefault("X-CSRF-Token", self.csrf)
        status, _, text = self.ask("POST", f"/api/{op}", body, **headers)
        return status, json.loads(text)


def test_every_surface_refuses_bad_input_counts_it_and_logs_no_traceback(
    rebeam_run: StartRun, tmp_path: Path, observers: list[Observe]
) -> None:
    (tmp_path / "counting.py").write_text(COUNTER)
    run = rebeam_run(TREE)
    run.events.wait("started", child="counter")
    observer = start_observer(run)
    observers.append(observer)
    client = Client(observer)

    assert client.ask("GET", "/")[0] == 403  # no token, no cookie
    assert client.ask("GET", "/?token=guess")[0] == 403
    assert client.ask("GET", "/events")[0] == 403
    assert client.ask("GET", "/static/observer.js")[0] == 200  # nothing secret there
    assert client.ask("GET", "/static/..%2f__init__.py")[0] in (403, 404)
    client.log_in(observer.token)

    path = json.dumps({"path": "shop/counter"}).encode()
    assert client.act("restart", path, **{"X-CSRF-Token": "forged"})[0] == 403
    assert client.act("restart", path, Origin="http://evil.example")[0] == 403
    status, reply = client.act("restart", b"x" * 5000)
    assert (status, reply["code"]) == (413, "too_large")
    assert client.act("restart", b"[1")[1]["code"] == "bad_request"
    status, reply = client.act("restart", json.dumps({"path": "shop/nobody"}).encode())
    assert (status, reply["error"]) == (400, "no child 'shop/nobody'")
    assert client.act("launch", path)[0] == 404
    status, _, _ = client.ask("GET", "/", **{"X-Long": "a" * 10_000})
    assert status == 400  # a header over the line limit

    status, _, text = client.ask("GET", "/api/counters")
    assert status == 200
    refused = json.loads(text)["refused"]
    assert refused == {
        "no_token": 2,
        "bad_token": 1,
        "not_found": 2,
        "csrf": 2,
        "too_large": 1,
        "bad_request": 2,
        "malformed_http": 1,
    }
    run.events.wait("started", child="counter")  # untouched: still its first incarnation
    assert all(e.get("incarnation") in (None, 1) for e in run.events.since(0))

    stop_process(observer.process)
    stderr = observer.process.stderr.read() if observer.process.stderr else ""
    assert "Traceback" not in stderr
    assert "refused a malformed HTTP request" in stderr
    assert len(stderr.splitlines()) <= 5 * len(refused) + 2, stderr  # a bounded rate


def test_the_command_says_in_one_line_what_is_wrong(tmp_path: Path) -> None:
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))  # no run anywhere

    def observe(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [REBEAM, "observe", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    nothing = observe("--namespace", "nobody-here")
    assert nothing.returncode == 1
    assert nothing.stderr.startswith("rebeam: no rebeam run")
    assert len(nothing.stderr.splitlines()) == 1
    bad_port = observe("--port", "70000")
    assert bad_port.returncode == 2
    assert "no TCP port" in bad_port.stderr


JOBS = (
    "apiVersion: rebeam.io/v1alpha1\nkind: Supervisor\nmetadata: {name: jobs}\n"
    "spec:\n  strategy: simple_one_for_one\n"
    "  childTemplate: {name: job, actor: {command: [sleep, '300']}}\n"
)


def test_a_dynamic_child_is_terminated_not_restarted(
    rebeam_run: StartRun, observers: list[Observe]
) -> None:
    run = rebeam_run(JOBS)
    run.wait_ready()
    assert run.rebeam("start-child", "jobs").returncode == 0
    run.events.wait("started", child="job-1")
    observer = start_observer(run)
    observers.append(observer)
    client = Client(observer)
    client.log_in(observer.token)
    _, _, page = client.ask("GET", "/")
    row = page[page.index('data-path="jobs/job-1"') :].split(">", 1)[0]
    assert "data-dyn" in row  # the page offers no restart for it
    status, _, text = client.ask("GET", "/api/status?path=jobs/job-1")
    assert status == 200
    assert json.loads(text)["status"].endswith(
        "answers no state requests: a command child has no state summary"
    )  # running, not "not running": a command child answers none
    body = json.dumps({"path": "jobs/job-1"}).encode()
    status, reply = client.act("restart", body)
    assert (status, reply["code"]) == (409, "dynamic_child")
    assert "can be terminated, not restarted" in reply["error"]
    assert client.act("terminate", body) == (200, {"ok": "terminate jobs/job-1: done"})
    run.events.wait("exited", child="job-1")
