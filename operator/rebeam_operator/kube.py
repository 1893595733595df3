"""The few Kubernetes API calls the operator makes, as coroutines (the official client runs in
worker threads). Every call returns plain dicts; "already exists" and "already gone" are
answers, not errors, because every call is repeated after an operator restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, Literal, overload

from kubernetes import client, config
from kubernetes.aio import client as aclient
from kubernetes.aio import config as aconfig
from kubernetes.client.exceptions import ApiException

from rebeam_operator import metrics
from rebeam_operator.hosts import GROUP, VERSION

__all__ = ["Conflict", "Kube", "load_async_config", "load_config"]

log = logging.getLogger("rebeam.operator")

Json = dict[str, Any]

NOT_FOUND, EXISTS = 404, 409


async def _none_on(status: int, call: Awaitable[Any]) -> Any:
    """``call``'s answer, or None when the API server answered ``status`` instead (404: it
    is not there; 409: one of that name exists already)."""
    try:
        return await call
    except ApiException as exc:
        if exc.status == status:
            return None
        raise


async def _conflict_on_409(call: Awaitable[Any]) -> Any:
    """``call``'s answer; a 409 (the object moved on from the resourceVersion we wrote
    against) raises :class:`Conflict`, which the driver answers by re-reading."""
    try:
        return await call
    except ApiException as exc:
        if exc.status == EXISTS:
            raise Conflict(str(exc.reason)) from exc
        raise


class Conflict(Exception):
    """A write refused because the object changed (409): re-read and redo."""


def load_config() -> client.ApiClient:
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call,unused-ignore]
    except config.ConfigException:
        config.load_kube_config(  # type: ignore[no-untyped-call,unused-ignore]
            config_file=os.environ.get("KUBECONFIG")
        )
    return client.ApiClient()


async def load_async_config() -> aclient.ApiClient:
    """The asyncio client, for the calls a restart waits for (``Kube.create_pod``)."""
    configuration = aclient.Configuration()
    try:
        aconfig.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call,unused-ignore]
    except aconfig.ConfigException:
        await aconfig.load_kube_config(  # type: ignore[no-untyped-call,unused-ignore]
            config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
        )
    # No proxy or netrc look-ups (aiohttp's trust_env) on every request, as the blocking
    # client makes none.
    configuration.client_session_kwargs = {"trust_env": False}
    return aclient.ApiClient(configuration)


class Kube:
    def __init__(self, api: client.ApiClient, aio: aclient.ApiClient | None = None) -> None:
        self.api = api
        # A restart's pod create goes out from the event loop itself: through a worker thread
        # it waited for that thread to be scheduled and then for the GIL, twice, and on a
        # loaded machine those waits were most of a restart's latency.
        self.aio_core = aclient.CoreV1Api(aio) if aio is not None else None
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.authentication = client.AuthenticationV1Api(api)
        self.authorization = client.AuthorizationV1Api(api)

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(metrics.counted(fn), *args, **kwargs)

    async def _raw(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Call and parse the JSON answer ourselves. The client would build V1Pod models,
        which we only turned back into dicts: with thousands of pods, that round trip was a
        large share of the operator's CPU. Errors still raise ApiException."""

        def call() -> Any:
            return json.loads(metrics.counted(fn)(*args, _preload_content=False, **kwargs).data)

        return await asyncio.to_thread(call)

    async def close(self) -> None:
        if self.aio_core is not None:
            await self.aio_core.api_client.close()

    def _dict(self, obj: Any) -> Json:
        if isinstance(obj, dict):
            return obj
        result: Json = self.api.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call,unused-ignore]
        return result

    # --- pods ----------------------------------------------------------------------------

    async def create_pod(self, body: Json) -> Json | None:
        """Create; None when a pod of that name exists already."""
        namespace = body["metadata"]["namespace"]
        if self.aio_core is not None:
            return await self._create_pod_on_loop(namespace, body)
        created: Json | None = await _none_on(
            EXISTS, self._raw(self.core.create_namespaced_pod, namespace, body)
        )
        return created

    async def _create_pod_on_loop(self, namespace: str, body: Json) -> Json | None:
        assert self.aio_core is not None
        try:
            response = await self.aio_core.create_namespaced_pod_without_preload_content(
                namespace,
                body,  # type: ignore[arg-type]  # a dict is sent as it is
            )
            data = await response.read()
        except Exception:
            metrics.api_error("create", None)  # no answer: the connection failed
            raise
        if response.status == EXISTS:
            metrics.api_error("create", EXISTS)
            return None
        if response.status >= 300:
            metrics.api_error("create", response.status)
            raise ApiException(
                status=response.status, reason=response.reason, body=data.decode(errors="replace")
            )
        created: Json = json.loads(data)
        return created

    async def delete_pod(
        self, namespace: str, name: str, grace: int, uid: str | None = None
    ) -> None:
        options = client.V1DeleteOptions(
            grace_period_seconds=grace,
            preconditions=client.V1Preconditions(uid=uid) if uid else None,
        )
        try:
            await self._run(self.core.delete_namespaced_pod, name, namespace, body=options)
        except ApiException as exc:
            # 404: gone already. 409: the UID precondition failed, so the pod of that name is
            # a newer one, not ours to delete.
            if exc.status not in (NOT_FOUND, EXISTS):
                raise

    async def get_pod(self, namespace: str, name: str) -> Json | None:
        pod: Json | None = await _none_on(
            NOT_FOUND, self._raw(self.core.read_namespaced_pod, name, namespace)
        )
        return pod

    async def list_pods(self, namespace: str, selector: str) -> list[Json]:
        listing = await self._raw(self.core.list_namespaced_pod, namespace, label_selector=selector)
        return list(listing.get("items") or [])

    # --- rebeam objects ------------------------------------------------------------------

    async def _object_call(
        self, none_on: int, call: Any, namespace: str, plural: str, arg: Any
    ) -> Json | None:
        """A call on one namespaced rebeam object; None when the API answers ``none_on``."""
        result: Json | None = await _none_on(
            none_on, self._run(call, GROUP, VERSION, namespace, plural, arg)
        )
        return result

    async def get_object(self, namespace: str, plural: str, name: str) -> Json | None:
        call = self.custom.get_namespaced_custom_object
        return await self._object_call(NOT_FOUND, call, namespace, plural, name)

    async def list_objects(
        self, namespace: str | None, plural: str, selector: str = ""
    ) -> list[Json]:
        """The objects of ``plural`` in ``namespace`` (every namespace for None), by label."""
        if namespace is None:
            result = await self._run(
                self.custom.list_cluster_custom_object,
                GROUP,
                VERSION,
                plural,
                label_selector=selector,
            )
        else:
            result = await self._run(
                self.custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                plural,
                label_selector=selector,
            )
        return list(result.get("items") or [])

    async def create_object(self, namespace: str, plural: str, body: Json) -> Json | None:
        call = self.custom.create_namespaced_custom_object
        return await self._object_call(EXISTS, call, namespace, plural, body)

    async def delete_object(self, namespace: str, plural: str, name: str) -> None:
        """Idempotent: an object already gone is fine."""
        call = self.custom.delete_namespaced_custom_object
        await self._object_call(NOT_FOUND, call, namespace, plural, name)

    @overload
    async def patch_object(
        self,
        namespace: str,
        plural: str,
        name: str,
        patch: Json,
        *,
        missing_ok: Literal[False] = False,
    ) -> Json: ...

    @overload
    async def patch_object(
        self, namespace: str, plural: str, name: str, patch: Json, *, missing_ok: bool
    ) -> Json | None: ...

    async def patch_object(
        self, namespace: str, plural: str, name: str, patch: Json, *, missing_ok: bool = False
    ) -> Json | None:
        """A merge patch; with ``metadata.resourceVersion`` in it, a 409 raises Conflict.
        With ``missing_ok``, an object that is not there is None (a best-effort write)."""
        call = _conflict_on_409(
            self._run(
                self.custom.patch_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                patch,
            )
        )
        patched: Json | None = await (_none_on(NOT_FOUND, call) if missing_ok else call)
        return patched

    async def replace_status(
        self, namespace: str, plural: str, name: str, resource_version: str, status: Json, kind: str
    ) -> Json:
        """PUT the whole status, if the object is still at ``resource_version``."""
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": resource_version},
            "status": status,
        }
        replaced: Json = await _conflict_on_409(
            self._run(
                self.custom.replace_namespaced_custom_object_status,
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                body,
            )
        )
        return replaced

    async def patch_status(self, namespace: str, plural: str, name: str, status: Json) -> None:
        """Best effort (Actor slot objects): a merge patch of status, no precondition."""
        await _none_on(
            NOT_FOUND,
            self._run(
                self.custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                {"status": status},
            ),
        )

    # --- who is asking (docs/security.md, "Kubernetes identity") ---------------------------

    async def review_token(self, token: str, audiences: list[str] | None) -> Json:
        """A TokenReview's status: ``authenticated``, ``user``, ``audiences``, ``error``.
        ``audiences`` None: the API server's own."""
        spec: Json = {"token": token}
        if audiences:
            spec["audiences"] = audiences
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
        review: Json = await self._raw(self.authentication.create_token_review, body)
        return dict(review.get("status") or {})

    async def review_access(self, user: Json, attributes: Json) -> Json:
        """A SubjectAccessReview's status (``allowed``, ``reason``) for ``user`` (a
        TokenReview's ``user``: username, uid, groups, extra) and resource ``attributes``."""
        spec: Json = {"resourceAttributes": attributes, "user": user.get("username", "")}
        for key in ("uid", "groups", "extra"):
            if user.get(key):
                spec[key] = user[key]
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": spec,
        }
        review: Json = await self._raw(self.authorization.create_subject_access_review, body)
        return dict(review.get("status") or {})

    # --- events --------------------------------------------------------------------------

    async def post_event(self, involved: Json, event_type: str, reason: str, message: str) -> None:
        now = datetime.now(UTC)
        meta = involved.get("metadata", involved)
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                generate_name=f"{meta['name']}.", namespace=meta["namespace"]
            ),
            involved_object=client.V1ObjectReference(
                api_version=involved.get("apiVersion"),
                kind=involved.get("kind"),
                name=meta["name"],
                namespace=meta["namespace"],
                uid=meta.get("uid"),
            ),
            reason=reason,
            message=message[:1024],
            type=event_type,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=client.V1EventSource(component="rebeam-operator"),
            reporting_component="rebeam-operator",
            reporting_instance=os.environ.get("HOSTNAME", "rebeam-operator"),
        )
        try:
            await self._run(self.core.create_namespaced_event, meta["namespace"], body)
        except ApiException as exc:
            log.warning("could not post event %s: %s", reason, exc.reason)
