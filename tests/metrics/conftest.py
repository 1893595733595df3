"""Reading metrics in tests: Prometheus text parsed with prometheus_client's own parser (what
a Prometheus server would accept), and the msgpack answer of a scrape over NATS."""

from __future__ import annotations

import select
import subprocess
import time
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from rebeam import _subjects, metrics
from rebeam._envelope import unpack_reply
from rebeam.pids import Pid

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, by name and labels."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def of_export(payload: list[Any]) -> Samples:
    """The samples of a :func:`rebeam.metrics.export` answer."""
    return {
        (name, frozenset(labels.items())): value
        for _, _, _, rows in payload
        for name, labels, value in rows
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as response:
        return parse(response.read().decode())


async def scrape_process(nc: Any, pid: Pid) -> Samples:
    """One actor's metrics, asked over NATS as ``rebeam run --metrics`` asks them."""
    msg = await nc.request(_subjects.stats(pid), metrics.SCRAPE, timeout=5)
    status, payload = unpack_reply(msg.data)
    assert status == 0, payload
    return of_export(payload)


def metrics_url(process: subprocess.Popen[str], timeout: float = 30.0) -> str:
    """The URL ``rebeam run --metrics`` says it serves on (its first line on stderr)."""
    assert process.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stderr], [], [], 0.5)
        if ready:
            line = process.stderr.readline()
            if line.startswith("rebeam: metrics on "):
                return line.split()[-1]
            if not line and process.poll() is not None:
                break
    raise AssertionError("rebeam run did not say where its metrics are")
