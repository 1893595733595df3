"""What a driver tells people: a Kubernetes Event on its object and, where ``rebeam run``
publishes one, the same lifecycle event on NATS (``rebeam.<ns>.events.…``).

A driver writes each notice into its status (the ``outbox``) together with the decision that
caused it, then sends it: an operator killed in between sends it again after its restart
(at least once), so a restart or a give-up is never silent.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from rebeam.exits import ExitReason

if TYPE_CHECKING:
    from rebeam_operator.driver import Driver

__all__ = ["send"]

Json = dict[str, Any]

log = logging.getLogger("rebeam.operator")


def _reason(note: Json) -> ExitReason | None:
    wire = note.get("reason")
    return None if wire is None else ExitReason.from_wire(wire)


async def send(driver: Driver, note: Json) -> None:
    kind = note["event"]
    reason = _reason(note)
    child = note.get("child")
    kube = driver.world.kube
    if kind == "restarting":
        children = ", ".join(note.get("children") or [])
        if reason is None:
            message = f"retrying the failed start of {child}: restarting {children}"
        else:
            message = f"{child} exited ({reason}), restarting {children}"
        await kube.post_event(driver.body, "Warning", "Restarting", message)
        driver._emit("restarting", child, None, None, reason)
    elif kind == "gave_up":
        message = driver.gave_up or f"{child} exited ({reason}); gave up"
        await kube.post_event(driver.body, "Warning", "GaveUp", message)
        driver._emit("gave_up", child, None, None, reason)
    elif kind == "init_failed":
        message = f"{child} failed to start ({reason}); the children already started were stopped"
        await kube.post_event(driver.body, "Warning", "StartFailed", message)
    elif kind == "shutdown":
        await kube.post_event(driver.body, "Normal", "Exited", f"exited ({reason})")
        driver._emit("shutdown", None, None, None, reason)
    elif kind == "spec_changed":
        await kube.post_event(driver.body, "Normal", "SpecChanged", str(note.get("message")))
    elif kind == "spec_refused":
        await kube.post_event(driver.body, "Warning", "SpecRefused", str(note.get("message")))
    elif kind == "auto_shutdown":
        message = f"significant child {child} exited ({reason}): shutting down"
        await kube.post_event(driver.body, "Normal", "AutoShutdown", message)
    else:
        # Not raised: the outbox is persisted, and a notice no code sends (one written by
        # another version of the operator) would fail every pass of this driver forever.
        log.error("dropping a notice of unknown kind %r: %s", kind, note)
