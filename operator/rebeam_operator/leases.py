"""The ``coordination.k8s.io/v1`` Lease calls of the shard keeper (keeper.py), as coroutines
over the official client's worker threads, with plain dicts in and out.

Every write names the ``resourceVersion`` it read, so two replicas racing for one lease
cannot both win: the loser gets :class:`~rebeam_operator.kube.Conflict`. Each call carries a
request timeout: a renewal that hangs must not hold up the keeper's loop (the keeper stops
acting on a shard at its renew deadline whatever its calls are doing).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rebeam_operator import metrics
from rebeam_operator.kube import Conflict

__all__ = ["LABEL_SET", "Leases", "lease_body", "micro_time"]

Json = dict[str, Any]

LABEL_SET = "rebeam.io/shard-set"  # every lease of one set of replicas carries its prefix


def micro_time(at: datetime | None = None) -> str:
    """A Lease's MicroTime: RFC 3339 with microseconds, UTC."""
    return (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_body(
    name: str, prefix: str, holder: str, duration: int, previous: Json | None = None
) -> Json:
    """The lease ``name`` held by ``holder`` (``""``: released), renewed now. From
    ``previous`` (as read) it keeps the resourceVersion the write is checked against, the
    acquire time while the holder stays, and the count of hand-overs."""
    old_spec = (previous or {}).get("spec") or {}
    old_holder = old_spec.get("holderIdentity") or ""
    now = micro_time()
    transitions = int(old_spec.get("leaseTransitions") or 0)
    if holder and old_holder and holder != old_holder:
        transitions += 1
    metadata: Json = {"name": name, "labels": {LABEL_SET: prefix}}
    version = ((previous or {}).get("metadata") or {}).get("resourceVersion")
    if version:
        metadata["resourceVersion"] = version
    spec: Json = {
        "holderIdentity": holder or None,
        "leaseDurationSeconds": duration,
        "leaseTransitions": transitions,
        "renewTime": now if holder else None,
        "acquireTime": (old_spec.get("acquireTime") if holder == old_holder else now)
        if holder
        else None,
    }
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {k: v for k, v in spec.items() if v is not None},
    }


class Leases:
    """The leases of one namespace (the operator's own)."""

    def __init__(self, api: client.ApiClient, namespace: str, timeout: float) -> None:
        self.api = client.CoordinationV1Api(api)
        self.namespace = namespace
        self.timeout = timeout

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Json:
        def call() -> Json:
            response = metrics.counted(fn)(
                *args, _preload_content=False, _request_timeout=self.timeout, **kwargs
            )
            result: Json = json.loads(response.data)
            return result

        return await asyncio.to_thread(call)

    async def list(self, prefix: str) -> list[Json]:
        listing = await self._call(
            self.api.list_namespaced_lease, self.namespace, label_selector=f"{LABEL_SET}={prefix}"
        )
        items: list[Json] = listing.get("items") or []
        return items

    async def create(self, body: Json) -> Json:
        """Create; Conflict when another replica created it first."""
        try:
            return await self._call(self.api.create_namespaced_lease, self.namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                raise Conflict(f"lease {body['metadata']['name']} exists") from exc
            raise

    async def replace(self, body: Json) -> Json:
        """Write against the resourceVersion in ``body``; Conflict when it moved on (or the
        lease is gone)."""
        name = body["metadata"]["name"]
        try:
            return await self._call(self.api.replace_namespaced_lease, name, self.namespace, body)
        except ApiException as exc:
            if exc.status in (404, 409):
                raise Conflict(f"lease {name} changed") from exc
            raise

    async def delete(self, name: str) -> None:
        try:
            await self._call(self.api.delete_namespaced_lease, name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
