"""JSON forms of the core's state, so that a backend can keep it across its own restarts.

The operator writes :meth:`Supervisor.snapshot` into a Supervisor's status after every batch
of commands, and rebuilds the core with :meth:`Supervisor.restore` when it starts again: the
restart history, the incarnation numbers, a plan half carried out and the events queued
behind it all survive, so no restart is lost or counted twice.

Everything here is plain data: children, events, plan steps and the few commands a plan
emits. A child's ``start`` payload is opaque to the core; a backend that adds children at
run time with payloads that are not JSON-like passes a :class:`StartCodec`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from rebeam.exits import ExitReason
from rebeam.supervision import messages as msg
from rebeam.supervision.childspec import ChildSpec, ChildType, RestartType

__all__ = [
    "SNAPSHOT_VERSION",
    "SnapshotError",
    "StartCodec",
    "event_from_json",
    "event_to_json",
    "spec_from_json",
    "spec_to_json",
    "value_from_json",
    "value_to_json",
]

SNAPSHOT_VERSION = 1

Json = Any


class SnapshotError(ValueError):
    """A snapshot this version cannot read."""


@dataclass(frozen=True)
class StartCodec:
    """How a child's ``start`` payload becomes JSON and back (identity by default)."""

    encode: Callable[[Any], Json] = lambda start: start
    decode: Callable[[Json], Any] = lambda data: data


def value_to_json(value: Any) -> Json:
    """Reply values and error reasons: JSON-like values, tuples, ChildRefs, ExitReasons."""
    if isinstance(value, ExitReason):
        return {"$exit": value.to_wire()}
    if isinstance(value, msg.ChildRef):
        return {"$child": [value.id, value.incarnation]}
    if isinstance(value, tuple):
        return {"$tuple": [value_to_json(v) for v in value]}
    return value


def value_from_json(data: Json) -> Any:
    if isinstance(data, dict) and len(data) == 1:
        ((key, inner),) = data.items()
        if key == "$exit":
            return ExitReason.from_wire(inner)
        if key == "$child":
            return msg.ChildRef(inner[0], inner[1])
        if key == "$tuple":
            return tuple(value_from_json(v) for v in inner)
    return data


def spec_to_json(spec: ChildSpec, codec: StartCodec) -> Json:
    return {
        "id": spec.id,
        "restart": spec.restart.value,
        "shutdown": spec.shutdown,
        "type": spec.type.value,
        "significant": spec.significant,
        "start": codec.encode(spec.start),
        "args": spec.args,
    }


def spec_from_json(data: Json, codec: StartCodec) -> ChildSpec:
    return ChildSpec(
        id=data["id"],
        restart=RestartType(data["restart"]),
        shutdown=data["shutdown"],
        type=ChildType(data["type"]),
        significant=data["significant"],
        start=codec.decode(data["start"]),
        args=data["args"],
    )


_ByIdRequest: TypeAlias = (
    msg.TerminateChildRequest | msg.RestartChildRequest | msg.DeleteChildRequest
)


def event_to_json(event: msg.Event, codec: StartCodec) -> Json:
    if isinstance(event, msg.ChildStarted | msg.StartIgnored):
        return {"kind": type(event).__name__, "child": event.child, "inc": event.incarnation}
    if isinstance(event, msg.StartFailed | msg.ChildExited):
        return {
            "kind": type(event).__name__,
            "child": event.child,
            "inc": event.incarnation,
            "reason": event.reason.to_wire(),
        }
    if isinstance(event, msg.StartChildRequest):
        spec = spec_to_json(event.spec, codec) if event.spec is not None else None
        return {
            "kind": "StartChildRequest",
            "id": event.request_id,
            "spec": spec,
            "args": event.args,
        }
    if isinstance(event, msg.ReplaceChildRequest):
        return {
            "kind": "ReplaceChildRequest",
            "id": event.request_id,
            "spec": spec_to_json(event.spec, codec),
        }
    if isinstance(event, _ByIdRequest):
        return {"kind": type(event).__name__, "id": event.request_id, "child": event.child}
    if isinstance(event, msg.ShutdownRequest):
        return {"kind": "ShutdownRequest", "reason": event.reason.to_wire()}
    return {"kind": "TryAgain", "child": event.child}


_REQUESTS: dict[str, type[_ByIdRequest]] = {
    "TerminateChildRequest": msg.TerminateChildRequest,
    "RestartChildRequest": msg.RestartChildRequest,
    "DeleteChildRequest": msg.DeleteChildRequest,
}


def event_from_json(data: Json, codec: StartCodec) -> msg.Event:
    kind = data["kind"]
    if kind == "ChildStarted":
        return msg.ChildStarted(data["child"], data["inc"])
    if kind == "StartIgnored":
        return msg.StartIgnored(data["child"], data["inc"])
    if kind == "StartFailed":
        return msg.StartFailed(data["child"], data["inc"], ExitReason.from_wire(data["reason"]))
    if kind == "ChildExited":
        return msg.ChildExited(data["child"], data["inc"], ExitReason.from_wire(data["reason"]))
    if kind == "StartChildRequest":
        spec = spec_from_json(data["spec"], codec) if data["spec"] is not None else None
        return msg.StartChildRequest(data["id"], spec, data["args"])
    if kind == "ReplaceChildRequest":
        return msg.ReplaceChildRequest(data["id"], spec_from_json(data["spec"], codec))
    if kind in _REQUESTS:
        return _REQUESTS[kind](data["id"], data["child"])
    if kind == "ShutdownRequest":
        return msg.ShutdownRequest(ExitReason.from_wire(data["reason"]))
    if kind == "TryAgain":
        return msg.TryAgain(data["child"])
    raise SnapshotError(f"unknown event kind {kind!r}")


def command_to_json(command: msg.Ready | msg.Reply | msg.InitFailed) -> Json:
    """The commands a plan emits as its own steps."""
    if isinstance(command, msg.Ready):
        return {"kind": "Ready"}
    if isinstance(command, msg.InitFailed):
        return {"kind": "InitFailed", "child": command.child, "reason": command.reason.to_wire()}
    result = command.result
    ok = isinstance(result, msg.Ok)
    value = result.value if isinstance(result, msg.Ok) else result.reason
    return {"kind": "Reply", "id": command.request_id, "ok": ok, "value": value_to_json(value)}


def command_from_json(data: Json) -> msg.Ready | msg.Reply | msg.InitFailed:
    kind = data["kind"]
    if kind == "Ready":
        return msg.Ready()
    if kind == "InitFailed":
        return msg.InitFailed(data["child"], ExitReason.from_wire(data["reason"]))
    if kind == "Reply":
        value = value_from_json(data["value"])
        return msg.Reply(data["id"], msg.Ok(value) if data["ok"] else msg.Error(value))
    raise SnapshotError(f"unknown command kind {kind!r}")
