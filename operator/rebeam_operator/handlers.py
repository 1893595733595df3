"""kopf's side: watch Supervisors, Actors applied on their own, and the operator's pods, and
hand every event to the :class:`~rebeam_operator.world.World`.

Only raw event handlers are used: kopf keeps no progress of its own in our objects (no
annotations, no finalizer of its own); every decision and its state live in the drivers and
in status. ``kopf run -m rebeam_operator.handlers`` works as ``rebeam-operator`` does, with
settings from the environment.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from rebeam_operator import heap, metrics, replicas
from rebeam_operator import kube as kube_module
from rebeam_operator.control import ControlServer
from rebeam_operator.hosts import GROUP, LABEL_MANAGED, MANAGED_BY, VERSION, is_actor_slot
from rebeam_operator.identity import Identity
from rebeam_operator.messaging import Messaging
from rebeam_operator.settings import Settings, parse
from rebeam_operator.world import World

__all__ = ["configure", "world"]

log = logging.getLogger("rebeam.operator")

_state: dict[str, Any] = {}


class _NoDiffBase(kopf.DiffBaseStorage):
    """kopf builds a "diff base" (a deep copy of the object, cleaned) on every event, for
    change handlers. We have none, only raw event handlers: with thousands of pods that copy
    was about a tenth of the operator's CPU. Nothing is built, fetched or stored."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def configure(settings: Settings) -> None:
    _state["settings"] = settings


def world() -> World:
    result: World = _state["world"]
    return result


@kopf.on.startup()
async def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    ours: Settings = _state.get("settings") or parse([])
    # No kopf peering: one replica, or replicas that each act only on the namespaces of the
    # shards they hold (replicas.py); restarts are made safe by status.
    settings.peering.standalone = True
    settings.posting.enabled = False  # our own Events name exit reasons; kopf's would be noise
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.persistence.finalizer = "rebeam.io/kopf"  # never added: no change handlers
    settings.persistence.diffbase_storage = _NoDiffBase()
    # Resources and namespaces are taken as they are at startup: no CRD or namespace listing
    # (and no RBAC for it). Install the CRDs before the operator.
    settings.scanning.disabled = True
    if "heap" not in _state:  # a startup retried by kopf installs it once
        _state["heap"] = heap.install(metrics.gc_paused)
    kube = kube_module.Kube(kube_module.load_config(), await kube_module.load_async_config())
    messaging = Messaging(ours.nats_url, tls_ca=ours.nats_ca)
    identity = Identity(ours, kube, messaging.claims)
    messaging.identity = identity if identity.secured else None
    if ours.shards:  # until it holds a shard, a replica leaves every pod to the others
        identity.owns = lambda namespace: False
    messaging.start()
    _state["world"] = World(ours, kube, messaging)
    identity.drivers = _state["world"].drivers
    keeper = replicas.sharded(ours, kube, _state["world"]) if ours.shards else None
    if keeper is not None:
        identity.owns = keeper.owns  # a pod of another replica's tree: abstain
    if ours.metrics_port is not None:
        _state["metrics"] = await metrics.serve(
            ours.metrics_port,
            ready=lambda: messaging.nc is not None and messaging.nc.is_connected,
            drivers=lambda: list(_state["world"].drivers.values()),
        )
    # The management API (start-child, ...) over NATS, once NATS is reached.
    _state["control"] = asyncio.create_task(ControlServer(_state["world"]).start())
    if not identity.secured:
        log.warning("no --issuer-secrets: the operator and its pods use NATS without credentials")
    if keeper is not None:  # last: a startup that fails (kopf retries it) holds no shard
        keeper.start()
        _state["keeper"] = keeper
    log.info(
        "rebeam operator started: namespaces=%s nats=%s", ours.namespaces or "all", ours.nats_url
    )


@kopf.on.cleanup()
async def _cleanup(**_: Any) -> None:
    if "keeper" in _state:  # stops its drivers, then hands its shards back
        await _state["keeper"].stop()
    if "world" in _state:
        await world().stop()
        await world().kube.close()


def _deleted(event: Any) -> bool:
    return bool(event.get("type") == "DELETED")


@kopf.on.event(GROUP, VERSION, "supervisors")
async def _supervisor(event: Any, **_: Any) -> None:
    world().on_host(dict(event["object"]), _deleted(event))


@kopf.on.event(GROUP, VERSION, "actors")
async def _actor(event: Any, **_: Any) -> None:
    body = dict(event["object"])
    if is_actor_slot(body):
        return  # its Supervisor's driver writes it
    world().on_host(body, _deleted(event))


@kopf.on.event("", "v1", "pods", labels={LABEL_MANAGED: MANAGED_BY})
async def _pod(event: Any, **_: Any) -> None:
    world().on_pod(dict(event["object"]), _deleted(event))
