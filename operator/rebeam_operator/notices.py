"""What a driver tells people: a Kubernetes Event on its object and, where ``rebeam run``
publishes one, the same lifecycle event on NATS (``rebeam.<ns>.events.…``).

A driver writes each notice into its status (the ``outbox``) together with the decision that
caused it, then sends it: an operator killed in between sends it again after its restart
(at least once), so a restart or a give-up is never silent.
"""

from __future__ import annotations

import logging
from typing import Any

from rebeam.exits import ExitReason
from rebeam_operator.effects import Teller

__all__ = ["send"]

Json = dict[str, Any]

log = logging.getLogger("rebeam.operator")


def _reason(note: Json) -> ExitReason | None:
    wire = note.get("reason")
    return None if wire is None else ExitReason.from_wire(wire)


async def send(teller: Teller, involved: Json, note: Json, gave_up: str | None) -> None:
    """Tell ``note`` as a Kubernetes Event on ``involved`` (the driver's object) and, where
    ``rebeam run`` publishes one, as a lifecycle event; ``gave_up`` is the message of a
    give-up, as status keeps it."""
    kind = note["event"]
    reason = _reason(note)
    child = note.get("child")
    if kind == "restarting":
        children = ", ".join(note.get("children") or [])
        if reason is None:
            message = f"retrying the failed start of {child}: restarting {children}"
        else:
            message = f"{child} exited ({reason}), restarting {children}"
        await teller.post_event(involved, "Warning", "Restarting", message)
        teller.emit("restarting", child, None, None, reason)
    elif kind == "gave_up":
        message = gave_up or f"{child} exited ({reason}); gave up"
        await teller.post_event(involved, "Warning", "GaveUp", message)
        teller.emit("gave_up", child, None, None, reason)
    elif kind == "init_failed":
        message = f"{child} failed to start ({reason}); the children already started were stopped"
        await teller.post_event(involved, "Warning", "StartFailed", message)
    elif kind == "shutdown":
        await teller.post_event(involved, "Normal", "Exited", f"exited ({reason})")
        teller.emit("shutdown", None, None, None, reason)
    elif kind == "spec_changed":
        await teller.post_event(involved, "Normal", "SpecChanged", str(note.get("message")))
    elif kind == "spec_refused":
        await teller.post_event(involved, "Warning", "SpecRefused", str(note.get("message")))
    elif kind == "invalid_spec":
        await teller.post_event(involved, "Warning", "InvalidSpec", str(note.get("message")))
    elif kind == "auto_shutdown":
        message = f"significant child {child} exited ({reason}): shutting down"
        await teller.post_event(involved, "Normal", "AutoShutdown", message)
    else:
        # Not raised: the outbox is persisted, and a notice no code sends (one written by
        # another version of the operator) would fail every pass of this driver forever.
        log.error("dropping a notice of unknown kind %r: %s", kind, note)
