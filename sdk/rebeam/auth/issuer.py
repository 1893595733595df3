"""The issuer: the backend's answer to "who is this connection, and what may it do?".

nats-server asks it for every client that connects (the *auth callout*): the server publishes
a signed authorization request on ``$SYS.REQ.USER.AUTH`` in the issuer's own account; the
issuer looks the connection's token up among the credentials it handed out and answers with a
user JWT, signed by its account key, that places the connection in its namespace's account
with the permissions of its :class:`~rebeam.auth.grants.Grant` — or with an error, and the
server closes the connection. Nothing is trusted that the server did not sign.

A credential is an opaque random token, given by the backend to one process (an actor
incarnation, the person running the tree, the backend itself). :meth:`Issuer.revoke` makes it
useless: later connections are refused, and the connections it already let in are closed
through the server's system account (``KICK``). docs/security.md tells the whole story.

Several issuers may serve one server (each ``rebeam run --nats URL --issuer FILE`` brings
its own): an issuer answers only for the credentials it handed out. Only the *primary* one,
the issuer of the server's own starter, refuses unknown tokens, and only after
``REFUSAL_DELAY``, so that the issuer that knows a token always answers first.

The issuer runs on a thread of its own with its own event loop, so that a busy supervisor
loop (or a test's) never delays a connection, and so that the same object serves ``rebeam
run``, the operator and the test fixtures.

Example::

    issuer = Issuer(server_url, secrets)         # secrets from the server's config
    issuer.start()
    token = issuer.issue(Grant(Role.ACTOR, "shop", pid=pid, names=("bank",)))
    ...                                           # the actor connects with token=token
    issuer.revoke(token)                          # its incarnation ended
    issuer.stop()
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from rebeam._nats_fixes import connect as nats_connect
from rebeam.auth import jwt
from rebeam.auth.grants import Grant, Role, client_pid_allowed, permissions
from rebeam.auth.nkeys import ACCOUNT, SERVER, KeyPair
from rebeam.errors import TlsError
from rebeam.pids import Pid

__all__ = ["AUTH_SUBJECT", "Issuer", "IssuerSecrets", "account_of"]

log = logging.getLogger("rebeam.auth")

AUTH_SUBJECT = "$SYS.REQ.USER.AUTH"
REFUSAL_DELAY = 0.5  # seconds a primary issuer leaves the others to answer first
_MAX_REQUEST = 64 * 1024


def account_of(namespace: str) -> str:
    """The NATS account that holds one rebeam namespace."""
    return f"ns_{namespace}"


@dataclass(frozen=True)
class IssuerSecrets:
    """What the server's configuration and the issuer share: the account key that signs
    user JWTs, and the passwords of the issuer's own two connections (its callout
    connection, and a system-account connection to close revoked connections)."""

    account: KeyPair
    auth_password: str
    system_password: str

    @classmethod
    def create(cls) -> IssuerSecrets:
        return cls(KeyPair.create(ACCOUNT), secrets.token_urlsafe(24), secrets.token_urlsafe(24))


@dataclass
class _Entry:
    grant: Grant
    connections: set[tuple[str, int]] = field(default_factory=set)  # (server id, client id)


@dataclass(frozen=True)
class _Answer:
    jwt: str
    refused: bool


@dataclass
class Counters:
    granted: int = 0
    refused: int = 0
    malformed: int = 0
    kicked: int = 0


class Issuer:
    AUTH_USER = "rebeam-issuer"
    SYSTEM_USER = "rebeam-system"

    def __init__(
        self,
        url: str,
        issuer_secrets: IssuerSecrets,
        *,
        primary: bool = True,
        tls_ca: str | None = None,
    ) -> None:
        self.url = url
        self.tls_ca = tls_ca  # the CA of a tls:// server; default $REBEAM_NATS_CA (rebeam._tls)
        self.primary = primary
        self.secrets = issuer_secrets
        self.counters = Counters()
        self._lock = threading.Lock()
        self._credentials: dict[str, _Entry] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._system: Any = None
        self._refusals_logged = 0

    # -- credentials (any thread) ---------------------------------------------------------

    def issue(self, grant: Grant) -> str:
        """A new credential for ``grant``: a token the holder connects with."""
        token = "rbm_" + secrets.token_urlsafe(32)
        with self._lock:
            self._credentials[token] = _Entry(grant)
        return token

    def revoke(self, token: str) -> None:
        """Refuse ``token`` from now on and close what it let in (in the background)."""
        with self._lock:
            entry = self._credentials.pop(token, None)
        if entry is None or not entry.connections or self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._kick(entry.connections), self._loop)

    def grant_of(self, token: str) -> Grant | None:
        with self._lock:
            entry = self._credentials.get(token)
        return entry.grant if entry else None

    # -- the service thread -----------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._run, name="rebeam-issuer", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"the credential issuer did not connect to {self.url}")
        if isinstance(self._failure, TlsError):
            raise self._failure  # says itself which server and CA: the user's to fix
        if self._failure is not None:
            raise RuntimeError(f"the credential issuer failed: {self._failure}")

    def stop(self) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start(), never lost
            self._failure = exc
            log.error("credential issuer stopped: %s", exc)
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        common: dict[str, Any] = {"max_reconnect_attempts": -1, "reconnect_time_wait": 0.2}
        common["tls_ca"] = self.tls_ca
        nc = await nats_connect(
            self.url,
            user=self.AUTH_USER,
            password=self.secrets.auth_password,
            name="rebeam-issuer",
            **common,
        )
        self._system = await nats_connect(
            self.url,
            user=self.SYSTEM_USER,
            password=self.secrets.system_password,
            name="rebeam-issuer-system",
            **common,
        )
        await nc.subscribe(AUTH_SUBJECT, cb=self._on_request)
        await nc.flush()
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            for conn in (nc, self._system):
                try:
                    await asyncio.wait_for(conn.close(), 5)
                except Exception as exc:  # closing is best effort: the server may be gone
                    log.debug("issuer connection close: %s", exc)

    async def _on_request(self, msg: Any) -> None:
        if len(msg.data) > _MAX_REQUEST:
            self.counters.malformed += 1
            return  # no answer: the server times the connection out
        try:
            request = jwt.decode(msg.data, kind="authorization_request", issuer_kind=SERVER)
            info = request["nats"]
            user_key = info["user_nkey"]
            server_id = info["server_id"]["id"]
        except (jwt.JwtError, KeyError, TypeError) as exc:
            self.counters.malformed += 1
            log.warning("refused a malformed authorization request: %s", exc)
            return
        client = info.get("client_info") or {}
        token = (info.get("connect_opts") or {}).get("auth_token") or ""
        answer = self._decide(token, client, user_key, server_id)
        if answer is None:
            return  # another issuer's credential, or nobody's: the primary refuses it
        if answer.refused:
            await asyncio.sleep(REFUSAL_DELAY if self.primary else 0)
        await msg.respond(answer.jwt.encode())

    def _decide(
        self, token: str, client: dict[str, Any], user_key: str, server_id: str
    ) -> _Answer | None:
        with self._lock:
            entry = self._credentials.get(token) if isinstance(token, str) else None
        if entry is None and not self.primary:
            return None
        grant = entry.grant if entry else None
        why = "" if grant is not None else "unknown or revoked credential"
        raw_name = client.get("name")
        name = raw_name if isinstance(raw_name, str) else ""
        if grant is not None and grant.role is Role.ADMIN:
            grant, why = _bind_client(grant, name)
        if grant is None or entry is None:
            return self._refuse(why, client, user_key, server_id)
        cid = client.get("id")
        if isinstance(cid, int):
            with self._lock:
                entry.connections.add((server_id, cid))
        self.counters.granted += 1
        claims = {
            "sub": user_key,
            "aud": account_of(grant.namespace),
            "name": str(grant.pid) if grant.pid else grant.label or grant.role.value,
            "nats": {
                **permissions(grant),
                "subs": -1,
                "data": -1,
                "payload": -1,
                "type": "user",
            },
        }
        user_jwt = jwt.encode(claims, self.secrets.account)
        return _Answer(self._respond(user_key, server_id, {"jwt": user_jwt}), refused=False)

    def _refuse(self, why: str, client: dict[str, Any], user_key: str, server_id: str) -> _Answer:
        self.counters.refused += 1
        if self._refusals_logged < 20 or self.counters.refused % 1000 == 0:
            self._refusals_logged += 1
            log.warning(
                "refused a NATS connection from %s (%s): %s [%d refused so far]",
                client.get("host", "?"),
                str(client.get("name", ""))[:80],
                why,
                self.counters.refused,
            )
        return _Answer(self._respond(user_key, server_id, {"error": why}), refused=True)

    def _respond(self, user_key: str, server_id: str, body: dict[str, Any]) -> str:
        claims = {
            "sub": user_key,
            "aud": server_id,
            "nats": {**body, "type": "authorization_response"},
        }
        return jwt.encode(claims, self.secrets.account)

    async def _kick(self, connections: set[tuple[str, int]]) -> None:
        for server_id, cid in connections:
            try:
                await self._system.request(
                    f"$SYS.REQ.SERVER.{server_id}.KICK", json.dumps({"cid": cid}).encode(), 2
                )
                self.counters.kicked += 1
            except Exception as exc:  # the connection may already be gone
                log.debug("kick of connection %d: %s", cid, exc)


def _bind_client(grant: Grant, name: str) -> tuple[Grant | None, str]:
    """An admin's connection speaks as the client pid it names when it connects."""
    try:
        pid = Pid.parse(name)
    except ValueError:
        return None, "an admin connection must be named with its client pid"
    if not client_pid_allowed(grant, pid):
        return None, f"{name} is not a client pid of namespace {grant.namespace}"
    return Grant(Role.ADMIN, grant.namespace, pid, grant.names, label=grant.label), ""
