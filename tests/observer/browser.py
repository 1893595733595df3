"""What every observer test shares, against ``rebeam run`` (tests/observer) or a cluster's
NATS (tests/e2e/operator/test_operator_observer.py): ``rebeam observe`` as a subprocess,
a headless Chromium under chromedriver, their fixtures (``observers`` and ``browser``,
defined as ``observers_fixture`` and ``browser_fixture``: import those where they are used),
and reading the page.

Chromium and its driver come from Debian (``chromium``, ``chromium-driver``): installed here
with apt when missing and running as root, as tools/images.py installs its tools; otherwise
the tests fail saying what to install. Every process started here is stopped by its own pid:
the observer, chromedriver (selenium's ``service.process``) and every browser process under
it, and :func:`open_browser` checks that none of them is left.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.local.conftest import DEADLINE, REBEAM, alive, descendants, processes_with_arg, wait_gone

BROWSER_PACKAGES = ("chromium", "chromium-driver")
URL_LINE = re.compile(r"at (http://\S+/\?token=(\S+))")


def ensure_browser() -> tuple[str, str]:
    """The paths of chromium and chromedriver, installing Debian's packages if needed."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        if os.geteuid() != 0:
            pytest.fail(
                "the observer tests need Chromium: `sudo apt-get install -y "
                + " ".join(BROWSER_PACKAGES)
                + "`"
            )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (["apt-get", "update"], ["apt-get", "install", "-y", *BROWSER_PACKAGES]):
            subprocess.run(argv, env=env, check=True, capture_output=True, timeout=900)
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("apt installed chromium and chromium-driver, but they are not on PATH")
    return chromium, driver


@dataclass
class Observe:
    process: subprocess.Popen[str]
    url: str  # with the token
    token: str

    @property
    def base(self) -> str:
        return self.url.split("?", 1)[0]


def launch_observer(args: list[str], env: dict[str, str], timeout: float = DEADLINE) -> Observe:
    """``rebeam observe ARGS``; returns once it printed its URL."""
    process = subprocess.Popen(
        [REBEAM, "observe", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in process.stdout or []], daemon=True
    ).start()
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        stop_process(process)
        stderr = process.stderr.read() if process.stderr else ""
        raise AssertionError(f"rebeam observe printed no URL: {stderr}") from None
    found = URL_LINE.search(line)
    if not found:
        stop_process(process)
        stderr = process.stderr.read() if process.stderr else ""
        raise AssertionError(f"rebeam observe printed {line!r}, no URL: {stderr}")
    return Observe(process, found.group(1), found.group(2))


def stop_process(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stop_observers(started: list[Observe]) -> None:
    """Stop each observer by its pid; each must end cleanly, having logged no traceback and
    taken nothing it read for bad input."""
    for observer in started:
        stop_process(observer.process)
        stderr = observer.process.stderr.read() if observer.process.stderr else ""
        assert observer.process.returncode == 0, stderr
        assert "Traceback" not in stderr
        assert "invalid" not in stderr, stderr
        if observer.process.stderr:
            observer.process.stderr.close()


@contextlib.contextmanager
def open_browser(tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium under chromedriver; both, and everything they started, are stopped
    by pid at the end, and none may remain."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = ensure_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",  # root in a container has no user namespace sandbox
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,800",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(flag)
    service = Service(executable_path=driver_path, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver_pid = service.process.pid
    try:
        yield driver
    finally:
        started = descendants(driver_pid)  # the browser and its helpers, before they go
        with contextlib.suppress(Exception):
            driver.quit()
        for os_pid in [*started, driver_pid]:
            if alive(os_pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(os_pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            service.process.wait(DEADLINE)
        wait_gone([*started, driver_pid])
        # And none that left the driver's tree (a browser helper reparented to init).
        profile = f"--user-data-dir={tmp_path / 'chromium'}"
        left = processes_with_arg(profile)
        for os_pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(os_pid, signal.SIGKILL)
        assert not left, f"chromium processes left after quit: {left}"


@pytest.fixture(name="observers")
def observers_fixture() -> Iterator[list[Observe]]:
    """Observers started by the test (append to the list); each stopped by its pid."""
    started: list[Observe] = []
    yield started
    stop_observers(started)


@pytest.fixture(name="browser")
def browser_fixture(tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium under chromedriver, stopped with everything it started."""
    with open_browser(tmp_path) as driver:
        yield driver


def wait_for(condition: object, timeout: float = DEADLINE, what: str = "", poll: float = 0.02):
    """The first truthy value of ``condition()`` (exceptions count as not yet), within
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()  # type: ignore[operator]
        except Exception as exc:
            last = exc
        else:
            if value:
                return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last!r})")


# -- reading and acting on the page ------------------------------------------------------


def live(driver: Any, timeout: float = DEADLINE) -> None:
    """Wait until the page's event stream is connected."""
    wait_for(
        lambda: (
            driver.execute_script("return document.getElementById('conn').textContent") == "live"
        ),
        timeout=timeout,
        what="the stream",
    )


def cell(driver: Any, path: str, column: int) -> str:
    """A cell's text, read in one script: the rows are replaced as the tree changes, so an
    element found in one step may be gone in the next."""
    text = driver.execute_script(
        "const row = document.querySelector(`#rows [data-path='${arguments[0]}']`);"
        "return row ? row.children[arguments[1]].textContent : null;",
        path,
        column,
    )
    return "" if text is None else str(text)


def click(driver: Any, path: str, op: str) -> None:
    """Select the child's row, then press the action bar's button for ``op``."""
    driver.execute_script(
        "document.querySelector(`#rows [data-path='${arguments[0]}']`).click();"
        "document.querySelector(`#actions button[data-op='${arguments[1]}']`).click();",
        path,
        op,
    )


def timeline(driver: Any) -> list[str]:
    return list(
        driver.execute_script(
            "return [...document.querySelectorAll('#timeline li')].map(li => li.textContent);"
        )
    )


def stamp_page(driver: Any, path: str, column: int) -> None:
    """From now on the page notes, by its own clock, when each timeline line appears and
    each text the cell ``column`` of ``path``'s row shows: how soon something is shown is
    then the page's doing alone, not also that of the test's polls (a WebDriver round trip
    each, which took over a second on a loaded machine)."""
    driver.execute_script(
        "window.rebeamShown = [];"
        "const cellText = () => {"
        "  const row = document.querySelector(`#rows [data-path='${arguments[0]}']`);"
        "  return row ? row.children[arguments[1]].textContent : null;"
        "};"
        "new MutationObserver((changes) => {"
        "  const now = Date.now();"
        "  for (const change of changes) for (const node of change.addedNodes)"
        "    if (node.nodeName === 'LI') window.rebeamShown.push(['line', node.textContent, now]);"
        "}).observe(document.getElementById('timeline'), {childList: true, subtree: true});"
        "new MutationObserver(() => {"
        "  window.rebeamShown.push(['cell', cellText(), Date.now()]);"
        "}).observe(document.getElementById('rows'), {childList: true, subtree: true,"
        "  characterData: true});",
        path,
        column,
    )


def line_shown_at(driver: Any, text: str) -> float | None:
    """When (epoch seconds) a timeline line containing ``text`` first appeared since
    :func:`stamp_page`, else None."""
    shown = driver.execute_script("return window.rebeamShown;")
    return next((ms / 1000 for kind, t, ms in shown if kind == "line" and text in t), None)


def cell_shown_at(driver: Any, text: str) -> float | None:
    """When (epoch seconds) the watched cell first showed ``text`` since :func:`stamp_page`,
    else None."""
    shown = driver.execute_script("return window.rebeamShown;")
    return next((ms / 1000 for kind, t, ms in shown if kind == "cell" and t == text), None)


def notice(driver: Any) -> str:
    return str(driver.execute_script("return document.getElementById('notice').textContent"))
