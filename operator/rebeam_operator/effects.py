"""Every act of one driver on the world: its namespace's pods and rebeam objects, its own
object's status and finalizers, Kubernetes Events, and what it tells NATS (lifecycle events,
claims, names, leases).

The driver and its helpers act only through :class:`Effects`, so a unit test hands them a
fake that records the acts and a real operator hands them :class:`WorldEffects`, which binds
the shared Kubernetes client and NATS connection to the driver's namespace.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeAlias

from rebeam._wakeups import Wakeups
from rebeam.events import LifecycleEvent
from rebeam.exits import ExitReason
from rebeam.pids import Pid
from rebeam_operator.hosts import Host
from rebeam_operator.kube import Kube
from rebeam_operator.messaging import Messaging
from rebeam_operator.settings import Settings

__all__ = ["Effects", "Services", "Teller", "WorldEffects"]

Json = dict[str, Any]
Why: TypeAlias = ExitReason | None  # the reason of a lifecycle event, if it has one


class Services(Protocol):
    """What every driver shares (the operator's world)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def kube(self) -> Kube: ...

    @property
    def messaging(self) -> Messaging: ...

    @property
    def passes(self) -> Wakeups:
        """Announced after every driver's pass (a management request may wait for one)."""

    async def node_ready(self, name: str) -> bool: ...


class Teller(Protocol):
    """The acts that tell people what happened (notices.py)."""

    def emit(
        self, event: str, child: str | None, inc: int | None, pid: Pid | None, reason: Why = None
    ) -> None:
        """Publish a lifecycle event of the driver's supervisor on NATS."""

    async def post_event(self, involved: Json, event_type: str, reason: str, message: str) -> None:
        """A Kubernetes Event on ``involved``."""


class Effects(Teller, Protocol):
    """The acts of one driver; names are of objects in the driver's namespace."""

    async def get_pod(self, name: str) -> Json | None: ...

    async def list_pods(self, selector: str) -> list[Json]: ...

    async def create_pod(self, body: Json) -> Json | None:
        """None when a pod of that name exists already."""

    async def delete_pod(self, name: str, grace: int, uid: str | None = None) -> None: ...

    async def get_object(self, plural: str, name: str) -> Json | None: ...

    async def list_objects(self, plural: str, selector: str) -> list[Json]: ...

    async def create_object(self, plural: str, body: Json) -> Json | None:
        """None when an object of that name exists already."""

    async def patch_object(self, plural: str, name: str, patch: Json) -> Json: ...

    async def patch_if_present(self, plural: str, name: str, patch: Json) -> Json | None:
        """A best-effort patch: None when the object is not there."""

    async def delete_object(self, plural: str, name: str) -> None: ...

    async def patch_status(self, plural: str, name: str, status: Json) -> None: ...

    async def replace_status(self, host: Host, status: Json) -> Json:
        """PUT the host object's status if it is still at ``host``'s resourceVersion
        (Conflict otherwise); the object as written."""

    async def set_finalizers(self, host: Host, finalizers: list[str]) -> Json:
        """The host object's finalizers, if it is still at ``host``'s resourceVersion."""

    def claim(self, pid: Pid) -> None:
        """Begin claiming the slot of a pid about to be created."""

    def ended(self, pid: Pid) -> None:
        """An incarnation is over: what it has open on NATS is closed."""

    async def release(self, pid: Pid) -> None:
        """Release the names registered by a pid."""

    async def order_kill(self, pid: Pid) -> bool:
        """Tell the runtime of an incarnation to SIGKILL itself (brutal_kill); False if the
        order could not be given."""

    async def drop_lease(self, pid: Pid) -> None: ...

    async def lease_alive(self, pid: Pid) -> bool | None:
        """Whether the incarnation's runtime holds its lease; None when NATS cannot tell."""

    async def node_ready(self, node: str) -> bool: ...


class WorldEffects:
    """:class:`Effects` on the real world, for the driver of ``host``."""

    def __init__(self, services: Services, host: Host) -> None:
        self._kube = services.kube
        self._messaging = services.messaging
        self._services = services
        self._namespace = host.namespace
        self._path = host.path

    def emit(
        self, event: str, child: str | None, inc: int | None, pid: Pid | None, reason: Why = None
    ) -> None:
        self._messaging.emit(
            LifecycleEvent(
                event=event,  # type: ignore[arg-type,unused-ignore]
                namespace=self._namespace,
                supervisor=self._path,
                child=child,
                incarnation=inc,
                pid=str(pid) if pid else None,
                reason=reason.to_wire() if reason is not None else None,
            )
        )

    async def post_event(self, involved: Json, event_type: str, reason: str, message: str) -> None:
        await self._kube.post_event(involved, event_type, reason, message)

    async def get_pod(self, name: str) -> Json | None:
        return await self._kube.get_pod(self._namespace, name)

    async def list_pods(self, selector: str) -> list[Json]:
        return await self._kube.list_pods(self._namespace, selector)

    async def create_pod(self, body: Json) -> Json | None:
        return await self._kube.create_pod(body)

    async def delete_pod(self, name: str, grace: int, uid: str | None = None) -> None:
        await self._kube.delete_pod(self._namespace, name, grace, uid)

    async def get_object(self, plural: str, name: str) -> Json | None:
        return await self._kube.get_object(self._namespace, plural, name)

    async def list_objects(self, plural: str, selector: str) -> list[Json]:
        return await self._kube.list_objects(self._namespace, plural, selector)

    async def create_object(self, plural: str, body: Json) -> Json | None:
        return await self._kube.create_object(self._namespace, plural, body)

    async def patch_object(self, plural: str, name: str, patch: Json) -> Json:
        return await self._kube.patch_object(self._namespace, plural, name, patch)

    async def patch_if_present(self, plural: str, name: str, patch: Json) -> Json | None:
        return await self._kube.patch_object(self._namespace, plural, name, patch, missing_ok=True)

    async def delete_object(self, plural: str, name: str) -> None:
        await self._kube.delete_object(self._namespace, plural, name)

    async def patch_status(self, plural: str, name: str, status: Json) -> None:
        await self._kube.patch_status(self._namespace, plural, name, status)

    async def replace_status(self, host: Host, status: Json) -> Json:
        return await self._kube.replace_status(
            host.namespace, host.plural, host.name, host.resource_version, status, host.kind
        )

    async def set_finalizers(self, host: Host, finalizers: list[str]) -> Json:
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": host.resource_version}}
        return await self._kube.patch_object(host.namespace, host.plural, host.name, patch)

    def claim(self, pid: Pid) -> None:
        self._messaging.claims.begin(pid)

    def ended(self, pid: Pid) -> None:
        self._messaging.ended(pid)

    async def release(self, pid: Pid) -> None:
        await self._messaging.release(pid)

    async def order_kill(self, pid: Pid) -> bool:
        return await self._messaging.order_kill(pid)

    async def drop_lease(self, pid: Pid) -> None:
        await self._messaging.drop_lease(pid)

    async def lease_alive(self, pid: Pid) -> bool | None:
        return await self._messaging.lease_alive(pid)

    async def node_ready(self, node: str) -> bool:
        return await self._services.node_ready(node)
