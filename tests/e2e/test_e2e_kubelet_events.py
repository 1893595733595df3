"""The kubelet's event recorder (infra/events.py) without a cluster: what makes two events one
(the aggregation key), counting instead of re-sending, the spam filter's bounded rate, the
bounded cache, and a full queue that drops rather than blocks. The events on a real API server
are checked in test_e2e_kubelet.py and test_e2e_container_kubelet.py."""

from __future__ import annotations

from typing import Any

import pytest
from infra.events import QUEUE_SIZE, Correlator, EventRecorder, PodRef, event_key, spam_key

Json = dict[str, Any]

POD = PodRef("ns", "p", "uid-1")


def _event(recorder: EventRecorder, container: str | None = "main", **change: str) -> Json:
    """What ``recorder`` queues for one event (taken off its queue)."""
    what = {"kind": "Warning", "reason": "BackOff", "message": 'Back-off pulling image "x"'}
    what.update(change)
    recorder.record(POD, container, what["kind"], what["reason"], what["message"])
    return recorder.queue.get_nowait()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_key_is_everything_but_the_times_and_the_name() -> None:
    recorder = EventRecorder("node-1")
    first, again = _event(recorder), _event(recorder)
    assert first["metadata"]["name"] != again["metadata"]["name"]
    assert event_key(first) == event_key(again)
    assert event_key(first) == (
        "kubelet", "node-1", "Pod", "ns", "p", "spec.containers{main}", "uid-1", "v1",
        "Warning", "BackOff", 'Back-off pulling image "x"',
    )  # fmt: skip
    for other in (
        _event(recorder, "sidecar"),
        _event(recorder, None),
        _event(recorder, kind="Normal"),
        _event(recorder, reason="Failed"),
        _event(recorder, message="Error: ImagePullBackOff"),
        _event(EventRecorder("node-2")),
    ):
        assert event_key(other) != event_key(first), other


def test_the_spam_key_is_the_object_and_the_type() -> None:
    recorder = EventRecorder("node-1")
    first = _event(recorder)
    assert spam_key(first) == spam_key(_event(recorder, "sidecar", reason="Failed", message="m"))
    assert spam_key(first) != spam_key(_event(recorder, kind="Normal"))


def test_a_repeated_event_is_counted_on_the_first_object() -> None:
    recorder = EventRecorder("node-1")
    correlator = Correlator()
    first = correlator.correlate(_event(recorder))
    assert first is not None
    assert first["count"] == 1
    for n in (2, 3):
        again = correlator.correlate(_event(recorder))
        assert again is not None
        assert again["count"] == n  # > 1: PATCH the object of that name
        assert again["metadata"]["name"] == first["metadata"]["name"]
        assert again["firstTimestamp"] == first["firstTimestamp"]
    other = correlator.correlate(_event(recorder, message="Error: ErrImagePull"))
    assert other is not None
    assert other["count"] == 1
    assert other["metadata"]["name"] != first["metadata"]["name"]


def test_the_spam_filter_bounds_the_rate_and_keeps_the_count() -> None:
    recorder, clock = EventRecorder("node-1"), Clock()
    correlator = Correlator(burst=3, refill_seconds=10.0, clock=clock)
    passed = [correlator.correlate(_event(recorder)) for _ in range(5)]
    assert [e and e["count"] for e in passed] == [1, 2, 3, None, None]
    clock.now = 10.0  # one token back
    later = correlator.correlate(_event(recorder))
    assert later is not None
    assert later["count"] == 6  # the dropped ones happened too
    assert correlator.correlate(_event(recorder, "sidecar")) is None  # same pod, same type
    assert correlator.correlate(_event(recorder, kind="Normal")) is not None


def test_the_cache_is_bounded() -> None:
    recorder = EventRecorder("node-1")
    correlator = Correlator(cache_size=2)
    first = correlator.correlate(_event(recorder, message="a"))
    correlator.correlate(_event(recorder, message="b"))
    correlator.correlate(_event(recorder, message="c"))  # "a" is forgotten
    again = correlator.correlate(_event(recorder, message="a"))
    assert first is not None
    assert again is not None
    assert again["count"] == 1
    assert again["metadata"]["name"] != first["metadata"]["name"]


def test_a_full_queue_drops_and_counts_never_blocks(caplog: pytest.LogCaptureFixture) -> None:
    recorder = EventRecorder("node-1")
    for _ in range(QUEUE_SIZE + 5):
        recorder.record(POD, "main", "Normal", "Started", "Container started")
    assert recorder.queue.qsize() == QUEUE_SIZE
    assert recorder.counts["full"] == 5
    assert len([r for r in caplog.records if "queue full" in r.message]) == 1  # bounded log


def test_a_long_message_is_cut() -> None:
    event = _event(EventRecorder("node-1"), message="x" * 100_000)
    assert len(event["message"]) == 1024
