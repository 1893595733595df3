"""``rebeam run --metrics``: one HTTP endpoint for the whole tree (docs/observability.md).

Every actor is an OS process of its own, with its own counters. On each scrape the runner
asks every live actor for its metrics on the actor's stats subject (the request body
:data:`rebeam.metrics.SCRAPE`; answered beside the mailbox, so a full mailbox does not delay
it), all at once, with one deadline, and merges the answers with its own metrics
(supervision, the runner process). Why not a shared directory of counter files: a
SIGKILLed process would leave its files behind and its gauges with them; here a dead
process simply does not answer, and its restarted successor continues its series.

An answer is input from the network: it is read only if it is msgpack of the expected
shape, within :data:`MAX_ANSWER_BYTES`, with at most :data:`MAX_SAMPLES` samples of families
named ``rebeam_*``; anything else is refused and counted
(``rebeam_scrape_refused_total``), as is every process that did not answer in time
(``rebeam_scrape_unanswered_total``). The labels ``namespace``, ``supervisor`` and ``child``
are the runner's, not what the process says: a process cannot pose as another.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import nats.errors
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from rebeam import _subjects, metrics
from rebeam._envelope import unpack_reply
from rebeam._ratelog import RateLog
from rebeam.errors import CodecError
from rebeam.pids import Pid

__all__ = ["MAX_ANSWER_BYTES", "MAX_SAMPLES", "Endpoint", "Target", "parse_address"]

log = logging.getLogger("rebeam.metrics")

DEADLINE = 2.0  # seconds one scrape waits for the actors (Prometheus' default timeout: 10)
MAX_ANSWER_BYTES = 512 * 1024
MAX_SAMPLES = 5000
_TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped", "info", "stateset"})


@dataclass(frozen=True)
class Target:
    """A live actor, and the labels its series get."""

    pid: Pid
    supervisor: str
    child: str


def parse_address(text: str) -> tuple[str, int]:
    """``[HOST:]PORT`` (host 127.0.0.1 by default; ``[::1]:9100`` for IPv6; port 0: any free
    one); ValueError naming the problem otherwise."""
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]") if sep else "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"--metrics wants [HOST:]PORT, not {text!r}") from None
    if not 0 <= port < 65536:
        raise ValueError(f"--metrics: {port} is no port number (0-65535)")
    return host or "127.0.0.1", port


class _Refused(Exception):
    """An answer that is not metrics of the expected shape."""


class Endpoint:
    """The run's HTTP endpoint: bound before anything starts (a port in use is refused at
    once), the tree attached once its NATS connection is up."""

    def __init__(self, host: str, port: int) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(REGISTRY)  # the runner's own: supervision, the process
        # Before the scrape's own counters: a scrape reports itself, not the one before.
        self.registry.register(_TreeCollector(self))
        self._unanswered = Counter(
            "rebeam_scrape_unanswered",
            "Actors that did not answer a scrape in time.",
            registry=self.registry,
        )
        self._refused = Counter(
            "rebeam_scrape_refused",
            "Scrape answers refused, by reason.",
            ("reason",),
            registry=self.registry,
        )
        self._answered = Gauge(
            "rebeam_scrape_answered",
            "Actors that answered the last scrape.",
            registry=self.registry,
        )
        self._tree: _Tree | None = None
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        self.url = f"http://{_host(host)}:{self._server.server_address[1]}/metrics"
        self.any_port = port == 0

    def attach(self, nc: Any, targets: Callable[[], list[Target]]) -> None:
        """Scrape the tree whose live actors ``targets`` lists, through ``nc``."""
        self._tree = _Tree(nc, targets, asyncio.get_running_loop(), RateLog(log, "metrics"))

    def detach(self) -> None:
        self._tree = None

    def close(self) -> None:
        self._tree = None
        self._server.shutdown()
        self._server.server_close()

    def gather(self) -> list[Metric]:
        """The tree's metrics (called by the HTTP server's thread)."""
        tree = self._tree
        if tree is None:
            return []
        future = asyncio.run_coroutine_threadsafe(tree.scrape(), tree.loop)
        try:
            answers, unanswered, refused = future.result(timeout=DEADLINE + 1)
        except (concurrent.futures.TimeoutError, RuntimeError):
            future.cancel()
            return []
        self._answered.set(len(answers))
        if unanswered:
            self._unanswered.inc(unanswered)
        for reason in refused:
            self._refused.labels(reason).inc()
        return merge(answers)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class _TreeCollector(Collector):
    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint

    def describe(self) -> list[Metric]:
        return []  # never scrape the tree to describe it (registration runs on the loop)

    def collect(self) -> Iterator[Metric]:
        yield from self._endpoint.gather()


Answer = tuple[Target, list[Any]]


@dataclass
class _Tree:
    nc: Any
    targets: Callable[[], list[Target]]
    loop: asyncio.AbstractEventLoop
    ratelog: RateLog

    async def scrape(self) -> tuple[list[Answer], int, list[str]]:
        """Every live actor's answer; how many did not answer; why others were refused."""
        targets = self.targets()
        results = await asyncio.gather(*(self._ask(t) for t in targets))
        answers: list[Answer] = []
        unanswered = 0
        refused: list[str] = []
        for target, result in zip(targets, results, strict=True):
            if result is None:
                unanswered += 1
            elif isinstance(result, str):
                refused.append(result)
                self.ratelog.warning("refused a scrape answer", f"{target.pid}: {result}")
            else:
                answers.append((target, result))
        return answers, unanswered, refused

    async def _ask(self, target: Target) -> list[Any] | str | None:
        try:
            msg = await self.nc.request(
                _subjects.stats(target.pid), metrics.SCRAPE, timeout=DEADLINE
            )
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            return None
        except Exception as exc:  # the connection is away: as good as no answer
            log.debug("scrape of %s failed: %s", target.pid, exc)
            return None
        if len(msg.data) > MAX_ANSWER_BYTES:
            return "oversized"
        try:
            return _families_of(msg.data)
        except (_Refused, CodecError):
            return "malformed"


def _families_of(data: bytes) -> list[Any]:
    """An answer's families, checked for shape; :class:`_Refused` otherwise."""
    status, payload = unpack_reply(data)
    if status != 0 or not isinstance(payload, list):
        raise _Refused
    samples = 0
    for family in payload:
        if not (isinstance(family, list) and len(family) == 4):
            raise _Refused
        name, kind, doc, rows = family
        if not (
            isinstance(name, str)
            and name.startswith("rebeam_")
            and kind in _TYPES
            and isinstance(doc, str)
            and isinstance(rows, list)
        ):
            raise _Refused
        samples += len(rows)
        if samples > MAX_SAMPLES:
            raise _Refused
        for row in rows:
            if not (
                isinstance(row, list)
                and len(row) == 3
                and isinstance(row[0], str)
                and row[0].startswith(name)
                and isinstance(row[1], dict)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in row[1].items())
                and isinstance(row[2], int | float)
                and not math.isnan(row[2])
            ):
                raise _Refused
    return payload


def merge(answers: list[Answer]) -> list[Metric]:
    """One family per name; samples with the same labels summed (two incarnations of one
    child during a restart, or several dynamic children under their template's name)."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for target, payload in answers:
        own = {"namespace": target.pid.namespace, "supervisor": target.supervisor}
        own["child"] = target.child
        for name, kind, doc, rows in payload:
            family = families.setdefault(name, Metric(name, doc, kind))
            if family.type != kind:
                continue  # two processes disagree about a family: keep the first
            summed = values.setdefault(name, {})
            for sample, labels, value in rows:
                key = (sample, tuple(sorted({**labels, **own}.items())))
                summed[key] = summed.get(key, 0.0) + value
    for name, summed in values.items():
        for (sample, labels), value in summed.items():
            families[name].add_sample(sample, dict(labels), value)
    return list(families.values())
