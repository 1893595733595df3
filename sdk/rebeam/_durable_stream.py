"""The durable mailboxes' stream: one per namespace, its name and settings, its creation, and
the names of what a durable actor's slot has in it (its consumer, its parked subject).

Both sides of a durable mailbox name these: the sender (rebeam._durable_batch), which creates
the stream when its first store finds none, and the receiver (rebeam._durable), which pulls
from the slot's consumer and parks there; so do the backends, which create the stream ahead
of the actors, and the grants, which let an actor reach its own slot's part alone. They live
below all of them, in this module of their own: the layout itself is described in
rebeam._durable.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import nats.js.api as jsapi
import nats.js.errors as jserr

from rebeam import _subjects
from rebeam._streams import MAX_CONSUMERS

if TYPE_CHECKING:
    from rebeam.pids import Pid

__all__ = [
    "DURABLE_MAX_AGE",
    "DURABLE_MAX_MESSAGES",
    "consumer_name",
    "ensure_stream",
    "parked_subject",
    "stream_config",
    "stream_name",
]

DURABLE_MAX_MESSAGES = 10_000  # per durable actor (stream-wide per subject)
DURABLE_MAX_AGE = 7 * 24 * 3600.0


def stream_name(namespace: str) -> str:
    return f"rebeam_mbox_{namespace}"


def consumer_name(pid: Pid) -> str:
    """The one consumer of ``pid``'s slot's queue."""
    return f"q-{pid.slot_token}"


parked_subject = _subjects.durable_parked


def stream_config(name: str, subjects: str) -> jsapi.StreamConfig:
    """A durable-mailbox stream's settings (the benchmark's raw baseline uses them too)."""
    return jsapi.StreamConfig(
        name=name,
        subjects=[subjects],
        retention=jsapi.RetentionPolicy.WORK_QUEUE,
        storage=jsapi.StorageType.FILE,
        max_msgs_per_subject=DURABLE_MAX_MESSAGES,
        discard=jsapi.DiscardPolicy.NEW,
        discard_new_per_subject=True,
        max_age=DURABLE_MAX_AGE,
        duplicate_window=120.0,
        max_consumers=MAX_CONSUMERS,  # one consumer per durable actor (see _streams)
    )


async def ensure_stream(js: Any, namespace: str) -> None:
    """Create the namespace's durable-mailbox stream if it does not exist yet."""
    name = stream_name(namespace)
    try:
        await js.stream_info(name)
        return
    except jserr.NotFoundError:
        pass
    config = stream_config(name, _subjects.durable_all(namespace))
    with contextlib.suppress(jserr.BadRequestError):  # created meanwhile by someone else
        await js.add_stream(config)
