"""The observer's page in a real headless Chromium against a real ``rebeam run``: the tree
appears, a crash shows as an exit and a restart within a second of its events, a child is
restarted from the page, and nothing is done for a browser without the token."""

from __future__ import annotations

import json
import os
import shutil
import signal
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from selenium.webdriver.common.by import By

from tests.local.conftest import COUNTER, StartRun, supervisor
from tests.observer.browser import cell, cell_shown_at, click, line_shown_at, stamp_page, timeline
from tests.observer.conftest import Observe, start_observer, wait_for

TREE = supervisor(
    "shop",
    "    - {name: counter, actor: {module: 'counting:Counter', register: counter}}\n"
    "    - {name: other, actor: {module: 'counting:Counter'}}\n"
    "    - {name: worker, actor: {module: 'observed_actors:Worker'}}\n",
)
ACTORS = Path(__file__).with_name("observed_actors.py")


def start(rebeam_run: StartRun, tmp_path: Path, observers: list[Observe]) -> tuple[Any, Observe]:
    (tmp_path / "counting.py").write_text(COUNTER)
    shutil.copy(ACTORS, tmp_path)
    run = rebeam_run(TREE)
    run.events.wait("started", child="worker")
    observer = start_observer(run)
    observers.append(observer)
    return run, observer


def event_time(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp()


def shown_at(driver: Any, text: str) -> float:
    """When the timeline first showed a line containing ``text`` (wall clock, the page's
    own note: see ``stamp_page``)."""
    at: float = wait_for(lambda: line_shown_at(driver, text), what=f"{text!r} on the timeline")
    return at


def test_tree_appears_and_a_crash_shows_within_a_second(
    rebeam_run: StartRun, tmp_path: Path, observers: list[Observe], browser: Any
) -> None:
    run, observer = start(rebeam_run, tmp_path, observers)
    browser.get(observer.url)
    wait_for(lambda: browser.find_element(By.ID, "conn").text == "live", what="the stream")
    assert cell(browser, "shop/counter", 2) == "running"
    assert cell(browser, "shop/counter", 3) == "1"
    os_pid = int(cell(browser, "shop/counter", 6))

    stamp_page(browser, "shop/counter", 3)  # the incarnation
    os.kill(os_pid, signal.SIGKILL)
    exited_seen = shown_at(browser, "shop/counter#1 exited")
    started_seen = shown_at(browser, "shop/counter#2 started")
    exited = run.events.wait("exited", child="counter")
    started = run.events.wait("started", child="counter", incarnation=2)
    assert exited_seen - event_time(exited) < 1.0
    assert started_seen - event_time(started) < 1.0
    assert "killed" in exited_seen_line(browser)
    incarnation_2 = wait_for(lambda: cell_shown_at(browser, "2"), what="incarnation 2")
    assert incarnation_2 - event_time(started) < 1.0
    assert "killed" in cell(browser, "shop/counter", 5)  # the last exit

    # Names, groups, and the stats the server polls: a rate and a handler latency.
    directory = browser.find_element(By.ID, "directory")
    wait_for(lambda: "counter" in directory.text, what="the registered name")
    wait_for(lambda: "pg/workers" in directory.text, what="the process group")

    def busy_counter() -> str:
        assert run.rebeam("call", "counter", "{}").returncode == 0
        return cell(browser, "shop/counter", 9)

    assert wait_for(busy_counter, what="a handler latency").endswith(" ms")
    assert float(cell(browser, "shop/counter", 8)) >= 0  # msg/s
    assert cell(browser, "shop/counter", 7) == "0"  # nothing waits in its mailbox

    shot = tmp_path / "observer.png"
    assert browser.save_screenshot(str(shot))
    print(f"observer screenshot: {shot}")


def exited_seen_line(driver: Any) -> str:
    return next(line for line in timeline(driver) if "counter#1 exited" in line)


def test_restart_from_the_page_and_nothing_without_the_token(
    rebeam_run: StartRun, tmp_path: Path, observers: list[Observe], browser: Any
) -> None:
    run, observer = start(rebeam_run, tmp_path, observers)
    refused = refusals_without_the_token(observer)
    assert refused == {"page": 403, "restart": 403, "wrong token": 403}
    browser.get(observer.url)
    wait_for(lambda: browser.find_element(By.ID, "conn").text == "live", what="the stream")
    # A forged POST carrying the session cookie but not the page's CSRF token: refused.
    cookie = browser.get_cookies()[0]
    assert post(observer, "restart", "shop/other", cookie=cookie) == 403
    assert all(e["event"] == "started" for e in run.events.since(0))  # nothing happened
    assert cell(browser, "shop/other", 3) == "1"

    click(browser, "shop/other", "restart")
    wait_for(lambda: browser.switch_to.alert, what="the confirmation").accept()
    wait_for(lambda: cell(browser, "shop/other", 3) == "2", what="incarnation 2 on the page")
    run.events.wait("started", child="other", incarnation=2)
    wait_for(lambda: "done" in browser.find_element(By.ID, "notice").text, what="the notice")

    # The "state" button: the actor's format_status, or a sentence when it has none.
    click(browser, "shop/worker", "status")
    shown = wait_for(
        lambda: json.loads(browser.find_element(By.ID, "status").text.split("\n", 1)[1]),
        what="the state summary",
    )
    assert shown["count"] == 0
    assert "secret" not in shown
    click(browser, "shop/counter", "status")
    wait_for(
        lambda: "defines no format_status" in browser.find_element(By.ID, "status").text,
        what="a sentence for an actor without format_status",
    )


def refusals_without_the_token(observer: Observe) -> dict[str, int]:
    return {
        "page": get_status(observer.base),
        "restart": post(observer, "restart", "shop/other"),
        "wrong token": get_status(observer.base + "?token=" + "x" * len(observer.token)),
    }


def get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def post(observer: Observe, op: str, path: str, cookie: dict[str, Any] | None = None) -> int:
    request = urllib.request.Request(
        f"{observer.base}api/{op}",
        data=json.dumps({"path": path}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    if cookie is not None:
        request.add_header("Cookie", f"{cookie['name']}={cookie['value']}")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code
