"""An edited manifest, step by step in a driver's pass: the plan of convergence.py is made
once per generation, its requests fed to the core and kept in the record until the core has
answered each one (a generation is observed only then)."""

from __future__ import annotations

import logging

from rebeam.supervision import Command, Error, Event, Reply, Supervisor
from rebeam_operator import convergence
from rebeam_operator.hosts import Host
from rebeam_operator.record import Record

__all__ = ["answered", "requests"]

Log = logging.LoggerAdapter[logging.Logger]


def requests(record: Record, core: Supervisor, host: Host, log: Log) -> list[Event]:
    """The core requests that take it to the object's generation, if it is not there yet; a
    notice of the change (or of its refusal) goes to the record's outbox."""
    refused = record.converge_problem or {}
    if refused.get("generation") == host.generation:
        return []  # refused as a whole; a new edit is looked at again
    applied = record.applied or host.spec
    seen = record.unchanged
    if seen is not None and seen[0] is applied and seen[1] is host.spec:
        return []  # these very specs were compared already: nothing to converge
    plan = convergence.plan(core, applied, host.spec, host.generation)
    if plan.problems:
        message = "; ".join(plan.problems)
        record.converge_problem = {"generation": host.generation, "message": message}
        log.warning("generation %s not applied: %s", host.generation, message)
        note = f"generation {host.generation} not applied: {message}"
        record.outbox.append({"event": "spec_refused", "message": note})
        record.dirty = True
        return []
    if plan.applied is None:
        record.unchanged = (applied, host.spec)
        return []
    record.applied = plan.applied
    record.converge_problem = None
    record.converging += plan.request_ids
    record.outbox.append({"event": "spec_changed", "message": plan.describe(host.generation)})
    record.dirty = True
    log.info("converging to generation %s: %d requests", host.generation, len(plan.events))
    return plan.events


def answered(record: Record, commands: list[Command], log: Log) -> None:
    """Strike the convergence requests the core answered among ``commands``."""
    for command in commands:
        if isinstance(command, Reply) and str(command.request_id) in record.converging:
            record.converging.remove(str(command.request_id))
            if isinstance(command.result, Error):
                log.warning("convergence step %s: %s", command.request_id, command.result.reason)
