"""The observer against a large tree: ``python -m benchmarks.bench_observer [--children N]``.

A ``rebeam run`` of N children, PER_SUPERVISOR to a supervisor (light ``sleep`` processes:
real OS processes under real supervision, without a Python interpreter each, so thousands
fit on a small machine) plus a few Python actors (whose stats the observer polls), then
``rebeam observe`` and a headless Chromium (Debian's ``chromium`` and ``chromium-driver``).
Reported: the page's first paint and first contentful paint (Chromium's performance API),
its size, and the observer's resident memory (now and its peak) after some stats rounds.
Targets (docs/observability.md, "Observer"): first paint under 1 s, RSS under 100 MiB.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from math import nan
from pathlib import Path
from typing import Any

from benchmarks._measure import Row, print_table
from rebeam._orphans import die_with_parent

REBEAM = str(Path(sys.executable).parent / "rebeam")
PER_SUPERVISOR = 50  # static children of one supervisor (a manifest allows 64)
ACTORS = 10  # Python actors answering stats, in supervisors of their own
LOADS = 5  # page loads measured
STATS_ROUNDS_FOR = 15.0  # seconds the observer polls before its memory is read
COUNTER = """\
import rebeam
class Counter(rebeam.Actor):
    async def init(self, args):
        self.n = 0
    async def handle_call(self, msg, from_):
        self.n += 1
        return self.n
"""


def manifest(children: int, actors: int = ACTORS) -> str:
    sleeper = "{command: [sleep, '3600']}"
    counter = "{module: 'counting:Counter'}"
    return "---\n".join([*_pools("pool", children, sleeper), *_pools("actors", actors, counter)])


def _pools(prefix: str, children: int, actor: str) -> list[str]:
    """Supervisors of PER_SUPERVISOR children each, ``children`` in all."""
    docs = []
    for s in range(-(-children // PER_SUPERVISOR)):
        count = min(PER_SUPERVISOR, children - s * PER_SUPERVISOR)
        lines = "".join(f"    - {{name: c{i}, actor: {actor}}}\n" for i in range(count))
        docs.append(_supervisor(f"{prefix}{s}", lines))
    return docs


def _supervisor(name: str, children: str) -> str:
    return (
        "apiVersion: rebeam.io/v1alpha1\nkind: Supervisor\n"
        f"metadata: {{name: {name}}}\nspec:\n  intensity: 100\n  children:\n{children}"
    )


def rss_kib(os_pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in KiB."""
    fields = {}
    for line in Path(f"/proc/{os_pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def wait_until(
    condition: Any, timeout: float, what: str, process: subprocess.Popen[str] | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise SystemExit(f"bench_observer: {process.args[1]} ended before {what}")
        time.sleep(0.1)
    raise SystemExit(f"bench_observer: no {what} within {timeout:g}s")


def started(events: Path) -> int:
    if not events.exists():
        return 0
    return sum(1 for line in events.read_text().splitlines() if '"event":"started"' in line)


def paint_times(driver: Any, url: str) -> dict[str, float]:
    driver.get(url)
    wait_until(
        lambda: driver.execute_script("return document.readyState") == "complete", 60, "page"
    )
    entries = driver.execute_script(
        "return performance.getEntriesByType('paint').map(e => [e.name, e.startTime]);"
    )
    nav = driver.execute_script(
        "const n = performance.getEntriesByType('navigation')[0];"
        "return [n.responseEnd, n.domContentLoadedEventEnd, n.transferSize];"
    )
    times = {name: float(ms) for name, ms in entries}
    times["response end"], times["dom content loaded"], times["bytes"] = map(float, nav)
    return times


def browser(workdir: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        raise SystemExit(
            "bench_observer: needs `apt-get install -y chromium chromium-driver` (Debian)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,900", f"--user-data-dir={workdir / 'chromium'}"):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def measure(children: int, actors: int, workdir: Path) -> list[Row]:
    (workdir / "app.yaml").write_text(manifest(children, actors))
    (workdir / "counting.py").write_text(COUNTER)
    env = dict(os.environ, XDG_STATE_HOME=str(workdir / "state"))
    env.pop("REBEAM_CREDENTIALS", None)
    events = workdir / "events.jsonl"
    namespace = f"bench-observe-{os.getpid()}"
    argv = [REBEAM, "run", "app.yaml", "--plain", "--namespace", namespace, "--events", str(events)]
    processes: list[subprocess.Popen[str]] = []
    driver = None
    try:
        run = subprocess.Popen(argv, cwd=workdir, env=env, text=True, preexec_fn=die_with_parent,
                               stdout=subprocess.DEVNULL, stderr=None)  # fmt: skip
        processes.append(run)
        began = time.monotonic()
        total = children + actors
        wait_until(lambda: started(events) >= total, 1800, f"{total} children started", run)
        print(f"bench_observer: {total} children started in {time.monotonic() - began:.0f}s")
        observe = subprocess.Popen(
            [REBEAM, "observe", "--namespace", namespace],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            preexec_fn=die_with_parent,
        )
        processes.append(observe)
        line = observe.stdout.readline() if observe.stdout else ""
        found = re.search(r"(http://\S+)", line)
        if not found:
            raise SystemExit(f"bench_observer: rebeam observe printed {line!r}")
        driver = browser(workdir)
        paint_times(driver, found.group(1))  # the token: sets the session cookie
        # The median of a few loads: one load on a shared machine measures its neighbours.
        loads = [paint_times(driver, found.group(1).split("?")[0]) for _ in range(LOADS)]
        first = {key: statistics.median(load.get(key, nan) for load in loads) for key in loads[0]}
        first["slowest"] = max(load.get("first-paint", nan) for load in loads)
        time.sleep(STATS_ROUNDS_FOR)  # a benchmark: let the poller run its rounds
        rss, peak = rss_kib(observe.pid)
        driver.save_screenshot(str(workdir / "observer.png"))
        print(f"bench_observer: screenshot {workdir / 'observer.png'}")
    finally:
        if driver is not None:
            driver.quit()
        for proc in reversed(processes):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    return rows(total, first, rss, peak)


def rows(total: int, first: dict[str, float], rss: int, peak: int) -> list[Row]:
    fp = first.get("first-paint", float("nan"))
    fcp = first.get("first-contentful-paint", float("nan"))
    return [
        Row(f"first paint, {total} children", f"{fp:.0f} ms", "-", None, "< 1000 ms", fp < 1000,
            f"median of {LOADS} loads; slowest {first['slowest']:.0f} ms; first contentful "
            f"paint {fcp:.0f} ms, page {first['bytes'] / 1024:.0f} KiB, served (response end) "
            f"at {first['response end']:.0f} ms"),
        Row("observer RSS", f"{rss / 1024:.0f} MiB", "-", None, "< 100 MiB", peak < 100 * 1024,
            f"peak {peak / 1024:.0f} MiB after {STATS_ROUNDS_FOR:g}s of stats rounds"),
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--children", type=int, default=2000, help="light (sleep) children in the tree"
    )
    parser.add_argument(
        "--actors", type=int, default=ACTORS, help="Python actors (their stats are polled)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-observer-") as tmp:
        print_table(measure(args.children, args.actors, Path(tmp)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
