"""The Prometheus metrics of one rebeam process: what its node received, sent, refused and
how long its handlers and calls took (docs/observability.md).

Why it is built this way:

* The hot path (a cast handled, a cast sent) must stay cheap: a counter here is a plain int
  in a list indexed by the envelope's kind, a timing is one ``bisect`` into fixed buckets,
  and the fast path of casts and sends times one message in 16 (:data:`SAMPLED`).
  Nothing takes a lock, builds a dict or looks up labels per message: the labels
  (namespace, supervisor path, child) are the process's, known once, and are attached only
  when somebody scrapes. ``REBEAM_METRICS=off`` leaves the timings out (the bench's
  comparison); counters are always kept, as :class:`~rebeam._stats.Stats` are.
* The counters :class:`~rebeam._stats.Stats` already keeps (refusals, durable deliveries,
  reconnects) are read from it at scrape time, not counted twice.
* Labels never carry a pid or an incarnation: a restarted child continues the series of its
  predecessor (from zero: Prometheus' ``rate`` takes the reset), so the number of series is
  bounded by the tree's shape, not by how often it restarted.

What reads it: a pod's metrics port (:func:`serve`), and ``rebeam run --metrics``, which
asks each actor for :func:`export` over NATS (rebeam.metrics_scrape).
"""

from __future__ import annotations

import os
import threading
import weakref
from bisect import bisect_left
from collections.abc import Iterator
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from rebeam._mailbox import Mailbox
    from rebeam._stats import Stats

__all__ = [
    "INFO",
    "LABELS",
    "REGISTRY",
    "REPLY",
    "SCRAPE",
    "MeteredNode",
    "NodeMetrics",
    "clock",
    "export",
    "serve",
]

LABELS = ("namespace", "supervisor", "child")
# Index into the per-kind counters: the envelope kinds SEND=1, CAST=2, CALL=3 index
# themselves; a reply sent and a local info message (Down, Exit, a timer) take the others.
REPLY = 0
INFO = 4
KIND_NAMES = ("reply", "send", "cast", "call", "info")
# The fast path of casts and sends times one message in 16 (count & SAMPLED == 0); every
# other handler (calls, the slow path, info messages) is timed each time.
SAMPLED = 15
# What a node's stats subject answers with its metrics instead of its counters.
SCRAPE = b"metrics"
# Seconds: from 100 microseconds (a trivial handler) to 10 s (a call's default deadline is 5).
BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_BOUNDS = (*(str(b) for b in BUCKETS), "+Inf")
# Stats fields exported as refusals, and the reason label each gets.
_REFUSALS = (
    ("mailbox_refused", "mailbox_full"),
    ("malformed", "malformed"),
    ("oversized", "oversized"),
    ("misaddressed", "misaddressed"),
    ("forged", "forged"),
    ("reply_refused", "reply_not_inbox"),
    ("links_refused", "links_limit"),
)
_DROPS = (
    ("slow_consumer_drops", "slow_consumer"),
    ("late_replies", "late_reply"),
    ("malformed_replies", "malformed_reply"),
    ("malformed_events", "malformed_event"),
)

clock = perf_counter
ENABLED = os.environ.get("REBEAM_METRICS", "on").strip().lower() not in ("off", "0", "false")


class MeteredNode(Protocol):
    """What a scrape reads of a node beside its :class:`NodeMetrics` (rebeam._node.Node is
    one): the counters its :class:`~rebeam._stats.Stats` keep, what waits in it now, and
    whether it is closed. The node sits above this module, whose hooks it calls."""

    @property
    def namespace(self) -> str: ...

    @property
    def stats(self) -> Stats: ...

    @property
    def mailbox(self) -> Mailbox: ...

    @property
    def _closed(self) -> bool: ...

    def stats_snapshot(self) -> dict[str, int]: ...


class Timings:
    """A histogram without a lock: one event loop writes it; a scrape (possibly from the
    HTTP server's thread) reads ints, which the GIL keeps whole."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds

    def buckets(self) -> list[tuple[str, float]]:
        total = 0
        out = []
        for bound, count in zip(_BOUNDS, self.counts, strict=True):
            total += count
            out.append((bound, float(total)))
        return out


class NodeMetrics:
    """One node's counters and timings; the hooks in the node, actor and durable mailbox
    call it (one line each)."""

    __slots__ = (
        "__weakref__",
        "_node",
        "call",
        "child",
        "handler",
        "received",
        "sent",
        "supervisor",
    )

    def __init__(self, node: MeteredNode) -> None:
        self._node = weakref.ref(node)
        self.supervisor = ""
        self.child = ""
        self.received = [0] * len(KIND_NAMES)
        self.sent = [0] * len(KIND_NAMES)
        self.handler = [Timings() for _ in KIND_NAMES]
        self.call = Timings()
        _LIVE.add(self)

    def where(self, supervisor: str | None, child: str | None) -> None:
        """The process's place in its tree: its labels."""
        self.supervisor = supervisor or ""
        self.child = child or ""

    def timed(self, kind: int, started: float) -> None:
        """The time of a handler that started at ``started`` (clock()), its message already
        counted in ``received`` before it ran."""
        if ENABLED:
            self.handler[kind].observe(clock() - started)

    def called(self, started: float) -> None:
        """A call this node made ended (answered, refused or timed out)."""
        if ENABLED:
            self.call.observe(clock() - started)

    @property
    def node(self) -> MeteredNode | None:
        return self._node()


_LIVE: weakref.WeakSet[NodeMetrics] = weakref.WeakSet()


class _NodesCollector(Collector):
    """Every live node of this process, summed by labels (a process has one node; a test
    or a client program may have more)."""

    def collect(self) -> Iterator[Metric]:
        families = _families()
        for metrics in list(_LIVE):
            node = metrics.node
            if node is None or node._closed:
                continue
            labels = [node.namespace, metrics.supervisor, metrics.child]
            _add_counts(families, labels, metrics)
            _add_stats(families, labels, node)
        yield from families.values()


def _families() -> dict[str, Any]:
    def counter(name: str, doc: str, *extra: str) -> CounterMetricFamily:
        return CounterMetricFamily(name, doc, labels=(*LABELS, *extra))

    def gauge(name: str, doc: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=LABELS)

    def histogram(name: str, doc: str, *extra: str) -> HistogramMetricFamily:
        return HistogramMetricFamily(name, doc, labels=(*LABELS, *extra))

    return {
        "received": counter(
            "rebeam_messages_received", "Messages handed to a handler, by kind.", "kind"
        ),
        "sent": counter("rebeam_messages_sent", "Messages sent, by kind.", "kind"),
        "refused": counter(
            "rebeam_messages_refused",
            "Messages refused before a handler saw them, by reason.",
            "reason",
        ),
        "dropped": counter(
            "rebeam_messages_dropped",
            "Messages dropped outside the mailbox (other subscriptions, late replies).",
            "reason",
        ),
        "depth": gauge("rebeam_mailbox_depth", "Messages waiting in the mailbox now."),
        "pending": gauge("rebeam_calls_pending", "Calls of this process waiting for an answer."),
        "handler": histogram(
            "rebeam_handler_seconds",
            "Time a handler took, by message kind (casts and sends on the fast path: one in 16).",
            "kind",
        ),
        "call": histogram("rebeam_call_seconds", "Call latency as the caller sees it."),
        "redelivered": counter(
            "rebeam_durable_redeliveries", "Durable messages delivered more than once."
        ),
        "parked": counter(
            "rebeam_durable_parked", "Durable messages parked after failed deliveries."
        ),
        "reconnects": counter("rebeam_nats_reconnects", "Reconnections to NATS."),
    }


def _add_counts(families: dict[str, Any], labels: list[str], metrics: NodeMetrics) -> None:
    for kind, name in enumerate(KIND_NAMES):
        if name != "reply":
            families["received"].add_metric([*labels, name], metrics.received[kind])
        if name != "info":
            families["sent"].add_metric([*labels, name], metrics.sent[kind])
        timings = metrics.handler[kind]
        if name != "reply":
            families["handler"].add_metric([*labels, name], timings.buckets(), timings.sum)
    families["call"].add_metric(labels, metrics.call.buckets(), metrics.call.sum)


def _add_stats(families: dict[str, Any], labels: list[str], node: MeteredNode) -> None:
    stats = node.stats
    for field, reason in _REFUSALS:
        families["refused"].add_metric([*labels, reason], getattr(stats, field))
    families["refused"].add_metric([*labels, "local_queue_full"], node.mailbox.refused)
    for field, reason in _DROPS:
        families["dropped"].add_metric([*labels, reason], getattr(stats, field))
    now = node.stats_snapshot()
    families["depth"].add_metric(labels, now["mailbox_pending"] + now["local_pending"])
    families["pending"].add_metric(labels, now["calls_pending"])
    families["redelivered"].add_metric(labels, stats.durable_redelivered)
    families["parked"].add_metric(labels, stats.parked)
    families["reconnects"].add_metric(labels, stats.reconnects)


# The registry of rebeam's own metrics in this process: what a scrape over NATS returns.
REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(_NodesCollector())


def export() -> list[list[Any]]:
    """This process's metrics as msgpack-ready lists: ``[name, type, help, samples]`` with
    each sample ``[name, labels, value]`` (what rebeam.metrics_scrape reads)."""
    out: list[list[Any]] = []
    for family in REGISTRY.collect():
        samples = [[s.name, dict(s.labels), float(s.value)] for s in family.samples]
        out.append([family.name, family.type, family.documentation, samples])
    return out


_serving_lock = threading.Lock()
_serving: Any = None


def serve(port: int, host: str = "0.0.0.0") -> None:
    """Serve this process's metrics (rebeam's and the process collector's) over HTTP on
    ``host:port`` (all interfaces by default: a pod's port, docs/observability.md). Once per
    process; later calls do nothing."""
    global _serving
    with _serving_lock:
        if _serving is not None:
            return
        from prometheus_client import PROCESS_COLLECTOR

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_NodesCollector())
        registry.register(PROCESS_COLLECTOR)
        _serving = start_http_server(port, addr=host, registry=registry)
