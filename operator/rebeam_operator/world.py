"""What every driver shares, and the routing of watch events to drivers.

kopf delivers watch events (``handlers.py``); :class:`World` keeps one
:class:`~rebeam_operator.driver.Driver` per Supervisor object (and per Actor applied on its
own), hands each the events of the pods and child Supervisor objects it owns (by the
``rebeam.io/host-uid`` label), and wakes it. Drivers do the rest.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException

from rebeam._wakeups import Wakeups
from rebeam_operator.driver import Driver
from rebeam_operator.hosts import LABEL_HOST, InvalidObject, is_actor_slot
from rebeam_operator.kube import Kube
from rebeam_operator.messaging import Messaging
from rebeam_operator.record import SPEC_VALID
from rebeam_operator.settings import Settings
from rebeam_operator.status import condition

__all__ = ["World"]

log = logging.getLogger("rebeam.operator")

Json = dict[str, Any]

NODE_CACHE_SECONDS = 2.0


class World:
    def __init__(self, settings: Settings, kube: Kube, messaging: Messaging) -> None:
        self.settings = settings
        self.kube = kube
        self.messaging = messaging
        self.drivers: dict[str, Driver] = {}
        self.passes = Wakeups()  # every driver announces each of its passes
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._nodes: dict[str, tuple[float, bool]] = {}
        # uids of every object handed to on_host, driven or not, until the management API
        # has caught up with them (control.py) and sets it to None
        self.seen: set[str] | None = set()
        self.host_seen = asyncio.Event()  # set whenever one is
        self._invalid: dict[str, str] = {}  # uid -> what was told of an object not driven
        self._reports: set[asyncio.Task[None]] = set()
        # Whether this replica acts on a namespace's trees now (keeper.py); one replica: all.
        self.owns: Callable[[str], bool] = lambda namespace: True

    # --- routing -------------------------------------------------------------------------

    def on_host(self, body: Json, deleted: bool) -> None:
        uid = body["metadata"]["uid"]
        if self.seen is not None:
            self.seen.add(uid)
            self.host_seen.set()
        if not self.owns(body["metadata"].get("namespace", "")):
            return  # another replica's shard
        driver = self.drivers.get(uid)
        if driver is None:
            if deleted:
                return
            try:
                driver = Driver.in_world(self, body)
            except InvalidObject as exc:
                # Nothing to drive; the watch brings the object again once it is fixed.
                self._tell_invalid(body, str(exc))
                return
            namespace = driver.host.namespace
            driver.may_act = lambda: self.owns(namespace)
            self.drivers[uid] = driver
            task = asyncio.create_task(driver.run(), name=f"driver {body['metadata']['name']}")
            self.tasks[uid] = task
            task.add_done_callback(functools.partial(self._ended, uid))
        else:
            driver.update(body, deleted)
        # A child Supervisor is also observed by its parent.
        parent = (body["metadata"].get("labels") or {}).get(LABEL_HOST)
        if parent and parent in self.drivers:
            self.drivers[parent].on_child_object(body, deleted)

    def _tell_invalid(self, body: Json, message: str) -> None:
        """An object the models refuse (what its CRD cannot say, e.g. a NUL in a command,
        or one stored under an older CRD) is told so on itself, as a driver tells a spec
        the core refuses: ``SpecValid=False`` and one ``InvalidSpec`` Event per distinct
        message. Its status says what was told, so an operator restart does not repeat it."""
        uid = body["metadata"]["uid"]
        conditions = (body.get("status") or {}).get("conditions") or []
        told: Json = next((c for c in conditions if c.get("type") == SPEC_VALID), {})
        if self._invalid.get(uid) == message or (
            told.get("status") == "False" and told.get("message") == message
        ):
            return
        log.error("cannot drive %s", message)
        self._invalid[uid] = message
        task = asyncio.create_task(self._report_invalid(body, message))
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

    async def _report_invalid(self, body: Json, message: str) -> None:
        meta = body["metadata"]
        plural = "supervisors" if body.get("kind") == "Supervisor" else "actors"
        generation = int(meta.get("generation") or 0)
        valid = condition([], SPEC_VALID, "False", "InvalidSpec", message, generation)
        try:
            await self.kube.patch_status(
                meta["namespace"], plural, meta["name"], {"phase": "Failed", "conditions": [valid]}
            )
            await self.kube.post_event(body, "Warning", "InvalidSpec", message)
        except Exception as exc:  # told again on the object's next event
            self._invalid.pop(meta["uid"], None)
            log.warning("could not report the invalid object: %s", exc)

    def on_pod(self, body: Json, deleted: bool) -> None:
        host = (body["metadata"].get("labels") or {}).get(LABEL_HOST)
        driver = self.drivers.get(host or "")
        if driver is not None and self.owns(driver.host.namespace):
            driver.on_pod(body, deleted)

    def _ended(self, uid: str, task: asyncio.Task[None]) -> None:
        if self.tasks.get(uid) is not task:
            return  # dropped already (drop()); a new driver of the object may run
        self.drivers.pop(uid, None)
        self.tasks.pop(uid, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("driver crashed", exc_info=task.exception())

    # --- shards (keeper.py) ----------------------------------------------------------------

    def drop(self, lost: Callable[[str], bool]) -> None:
        """Stop the drivers of the namespaces ``lost`` names, at once, and forget them: their
        shard is another replica's now or soon. What they decided is in status; what they
        were carrying out, the next owner carries out again."""
        for uid, driver in list(self.drivers.items()):
            if lost(driver.host.namespace):
                driver.requests.forget("the tree moved to another operator replica: ask again")
                self.drivers.pop(uid, None)
                task = self.tasks.pop(uid, None)
                if task is not None:
                    task.cancel()

    async def resync(self, wanted: Callable[[str], bool]) -> None:
        """Pick up every tree of the namespaces ``wanted`` names (a shard just taken): the
        watches told of them while another replica held them."""
        for namespace in self.settings.namespaces or (None,):
            if namespace is not None and not wanted(namespace):
                continue
            for plural in ("supervisors", "actors"):
                for obj in await self.kube.list_objects(namespace, plural):
                    if plural == "actors" and is_actor_slot(obj):
                        continue
                    if wanted(obj["metadata"]["namespace"]):
                        self.on_host(obj, False)

    async def stop(self) -> None:
        for task in list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        await self.messaging.close()

    # --- nodes ---------------------------------------------------------------------------

    async def node_ready(self, name: str) -> bool:
        """Whether the node says it is Ready (cached briefly); unknown nodes are not."""
        cached = self._nodes.get(name)
        if cached and time.monotonic() - cached[0] < NODE_CACHE_SECONDS:
            return cached[1]
        ready = False
        try:
            node = await asyncio.to_thread(self.kube.core.read_node, name)
            for condition in (node.status.conditions if node.status else None) or []:
                if condition.type == "Ready":
                    ready = condition.status == "True"
        except ApiException as exc:
            if exc.status == 404:
                ready = False  # the node is gone: its pods are lost
            else:
                log.info("cannot read node %s: %s", name, exc)
                ready = True  # cannot tell: never fence on a guess
        except Exception as exc:
            log.info("cannot read node %s: %s", name, exc)
            ready = True  # cannot tell: never fence on a guess
        self._nodes[name] = (time.monotonic(), ready)
        return ready
