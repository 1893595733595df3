"""Who may connect to NATS on a cluster, and as what: the operator is the credential issuer.

The operator runs the NATS server's primary issuer (``rebeam.auth.issuer``) with the secrets
of ``--issuer-secrets``, every namespace in one account (``--nats-account``), and connects
itself with a backend grant. Nobody else is handed a credential: the issuer's resolver
(:meth:`Identity.resolve`) accepts Kubernetes tokens instead, checked by the API server with
a TokenReview (docs/security.md, "Kubernetes identity"):

* **actor pods** present their projected ServiceAccount token, audience ``rebeam-nats``
  (pods.py mounts it). The review names the pod the token is bound to; the pod must be one
  this operator made for an incarnation it supervises (labels, name, pid annotation and
  uid agree with the driver), still alive, and its slot claimed (claims.py). The grant is
  that incarnation's pid, with the names its manifest declares. A deleted pod's token no
  longer passes the review, and an ended incarnation is refused by pid (:meth:`ended`),
  its open connections closed.
* **people** (the ``rebeam`` CLI) present their own bearer token, reviewed for the API
  server's own audience: an ADMIN grant for the client pid they connect as, labelled with
  their user name. What they may then ask is decided per request by RBAC (control.py).

Which path a token takes is read from its ``aud`` claim (unverified: the review decides).
Positive reviews are cached briefly by the token's hash; the pod checks run every time.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rebeam.auth.grants import Grant, Role
from rebeam.auth.issuer import Abstain, Issuer, shared
from rebeam.errors import Refused
from rebeam.natsd import read_issuer_secrets
from rebeam.pids import Pid
from rebeam_operator.claims import Claims
from rebeam_operator.hosts import (
    ANN_PID,
    LABEL_CHILD,
    LABEL_HOST,
    LABEL_INCARNATION,
    LABEL_MANAGED,
    MANAGED_BY,
)
from rebeam_operator.kube import Kube
from rebeam_operator.pods import TOKEN_AUDIENCE
from rebeam_operator.settings import Settings
from rebeam_operator.view import DriverView

__all__ = ["AUDIENCE", "Identity"]

log = logging.getLogger("rebeam.operator")

Json = dict[str, Any]

AUDIENCE = TOKEN_AUDIENCE  # of the token an actor pod connects with
POD_NAME = "authentication.kubernetes.io/pod-name"
POD_UID = "authentication.kubernetes.io/pod-uid"
CACHE_SECONDS = 30.0
MAX_CACHED = 4096
MAX_ENDED = 65536
DECIDE_DEADLINE = 4.0  # under the server's authorization timeout (serverconf.py)
CLAIM_DEADLINE = 3.0
_MAX_TOKEN = 16 * 1024
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


class Identity:
    def __init__(self, settings: Settings, kube: Kube, claims: Claims) -> None:
        self.settings = settings
        self.kube = kube
        self.claims = claims
        self.drivers: Mapping[str, DriverView] | None = None  # by host uid, once they exist
        self.issuer: Issuer | None = None
        self.backend_token: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reviews: OrderedDict[tuple[str, str], tuple[float, Json]] = OrderedDict()
        self._ended: OrderedDict[Pid, None] = OrderedDict()
        # Whether this replica drives a namespace's trees (keeper.py); one replica: all.
        self.owns: Callable[[str], bool] = lambda namespace: True

    @property
    def secured(self) -> bool:
        return self.settings.issuer_secrets is not None

    async def start(self) -> None:
        """Run the issuer (retrying until NATS is reached) and issue the operator's own
        credential. Without issuer secrets, nothing: the server must be open."""
        if not self.secured or self.issuer is not None:
            return
        assert self.settings.issuer_secrets is not None
        self._loop = asyncio.get_running_loop()
        secrets = read_issuer_secrets(Path(self.settings.issuer_secrets))
        while True:
            issuer = Issuer(
                self.settings.nats_url,
                secrets,
                account_for=shared(self.settings.nats_account),
                resolve=self._resolve_blocking,
            )
            try:
                await asyncio.to_thread(issuer.start)
                break
            except RuntimeError as exc:
                issuer.stop()
                log.warning("the credential issuer cannot start (%s); retrying", exc)
                await asyncio.sleep(2)
        self.issuer = issuer
        grant = Grant(Role.BACKEND, "*", label="rebeam-operator")
        self.backend_token = issuer.issue(grant)
        log.info("issuing NATS credentials (account %s)", self.settings.nats_account)

    def stop(self) -> None:
        if self.issuer is not None:
            self.issuer.stop()
            self.issuer = None

    def ended(self, pid: Pid) -> None:
        """An incarnation is over: its pod may not connect again, and what it has open is
        closed."""
        self._ended[pid] = None
        while len(self._ended) > MAX_ENDED:
            self._ended.popitem(last=False)
        if self.issuer is not None:
            self.issuer.revoke_pid(pid)

    def bound(self, pid: Pid) -> Grant | None:
        """The grant a pid's connections were let in under (who asks a control request)."""
        return self.issuer.bound(pid) if self.issuer is not None else None

    # -- the resolver ------------------------------------------------------------------------

    def _resolve_blocking(self, token: str, client: dict[str, Any]) -> Grant | None:
        """The issuer's resolver: called on one of its worker threads; decided on the
        operator's loop, where the drivers live."""
        loop = self._loop
        if loop is None or loop.is_closed():
            raise PermissionError("the operator is stopping")
        future = asyncio.run_coroutine_threadsafe(self.resolve(token, client), loop)
        try:
            return future.result(DECIDE_DEADLINE)
        except TimeoutError:
            future.cancel()
            raise PermissionError(
                f"the operator could not decide within {DECIDE_DEADLINE:g}s"
            ) from None

    async def resolve(self, token: str, client: dict[str, Any]) -> Grant | None:
        if len(token) > _MAX_TOKEN:
            raise PermissionError("the token is too long")
        if AUDIENCE in _audiences(token):
            return await self._actor(token)
        return await self._person(token, client)

    async def _review(self, token: str, audience: str | None) -> Json:
        """The user a token is (a TokenReview, cached briefly); PermissionError if none."""
        key = (hashlib.sha256(token.encode()).hexdigest(), audience or "")
        cached = self._reviews.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        status = await self.kube.review_token(token, [audience] if audience else None)
        if not status.get("authenticated"):
            why = str(status.get("error") or "the API server did not authenticate it")[:200]
            raise PermissionError(f"not a valid Kubernetes token: {why}")
        if audience and audience not in (status.get("audiences") or []):
            raise PermissionError(f"the token is not for audience {audience}")
        user: Json = dict(status.get("user") or {})
        self._reviews[key] = (time.monotonic() + CACHE_SECONDS, user)
        self._reviews.move_to_end(key)
        while len(self._reviews) > MAX_CACHED:
            self._reviews.popitem(last=False)
        return user

    async def _actor(self, token: str) -> Grant:
        user = await self._review(token, AUDIENCE)
        extra = user.get("extra") or {}
        pod_name, pod_uid = _first(extra.get(POD_NAME)), _first(extra.get(POD_UID))
        namespace = _service_account_namespace(str(user.get("username", "")))
        if not (pod_name and pod_uid and namespace):
            raise PermissionError(f"a {AUDIENCE} token must be a pod's ServiceAccount token")
        if not self.owns(namespace):  # the replica that drives it answers, grant or refusal
            raise Abstain(f"{namespace} is driven by another operator replica")
        pid, names, label = await self._actor_pod(namespace, pod_name, pod_uid)
        if pid in self._ended:
            raise PermissionError(f"{pid} has ended")
        try:
            await self.claims.wait(pid, CLAIM_DEADLINE)
        except Refused as exc:
            raise PermissionError(str(exc)) from None
        except TimeoutError:
            raise PermissionError(f"the slot of {pid} is not claimed yet") from None
        return Grant(Role.ACTOR, namespace, pid, names=names, label=label)

    async def _actor_pod(
        self, namespace: str, name: str, uid: str
    ) -> tuple[Pid, tuple[str, ...], str]:
        """The incarnation an actor pod runs, if this operator made the pod for it and it is
        alive; PermissionError naming what does not match otherwise."""
        drivers = self.drivers
        if drivers is None:
            raise PermissionError("the operator is starting")
        pod = next(
            (
                d.pods[name]
                for d in drivers.values()
                if d.host.namespace == namespace and name in d.pods
            ),
            None,
        )
        if pod is None:
            pod = await self.kube.get_pod(namespace, name)
        meta = (pod or {}).get("metadata") or {}
        if pod is None or meta.get("uid") != uid:
            raise PermissionError(f"pod {namespace}/{name} is gone")
        labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
        driver = drivers.get(str(labels.get(LABEL_HOST, "")))
        if labels.get(LABEL_MANAGED) != MANAGED_BY or driver is None:
            raise PermissionError(f"pod {namespace}/{name} is not an actor pod of this operator")
        child = str(labels.get(LABEL_CHILD, ""))
        try:
            incarnation = int(labels.get(LABEL_INCARNATION, ""))
            pid = Pid.parse(str(annotations.get(ANN_PID, "")))
        except ValueError:
            raise PermissionError(f"pod {namespace}/{name} has no valid pid") from None
        expected = driver.pid(child, incarnation)
        if (
            driver.host.namespace != namespace
            or driver.host.pod_name(child, incarnation) != name
            or pid.namespace != namespace
            or pid.incarnation != incarnation
            or (expected is not None and expected != pid)
        ):
            raise PermissionError(f"pod {namespace}/{name} is not the pod of {pid}")
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            raise PermissionError(f"{pid} has ended")
        spec = driver.child(child)
        register = spec.actor.register_as if spec is not None and spec.actor else None
        return pid, (register,) if register else (), f"{driver.host.path}/{child}#{incarnation}"

    async def _person(self, token: str, client: dict[str, Any]) -> Grant:
        user = await self._review(token, None)
        raw_name = client.get("name")
        try:
            namespace = Pid.parse(raw_name if isinstance(raw_name, str) else "").namespace
        except ValueError:
            raise PermissionError("a connection must be named with its client pid") from None
        # A namespace is a Kubernetes namespace: in the shared account, a name with '_'
        # could otherwise reach another namespace's buckets (rebeam_<ns>_local).
        if not _DNS_LABEL.fullmatch(namespace):
            raise PermissionError(f"{namespace!r} is not a Kubernetes namespace")
        watched = self.settings.namespaces
        if watched and namespace not in watched:
            raise PermissionError(f"namespace {namespace} is not run by this operator")
        username = str(user.get("username", ""))
        return Grant(Role.ADMIN, namespace, label=username, extra={"user": user})


def _audiences(token: str) -> list[str]:
    """The ``aud`` claim of a JWT, unverified (it only picks which review to ask for)."""
    parts = token.split(".")
    if len(parts) != 3:
        return []
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, TypeError):
        return []
    aud = claims.get("aud") if isinstance(claims, dict) else None
    if isinstance(aud, str):
        return [aud]
    return [a for a in aud if isinstance(a, str)] if isinstance(aud, list) else []


def _first(value: Any) -> str:
    if isinstance(value, list) and value and isinstance(value[0], str):
        return value[0]
    return ""


def _service_account_namespace(username: str) -> str:
    prefix, _, rest = username.partition("system:serviceaccount:")
    namespace, _, account = rest.partition(":")
    return namespace if not prefix and namespace and account else ""
