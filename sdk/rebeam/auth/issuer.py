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

Credentials it did not issue can still be accepted by a *resolver* (``resolve``), a blocking
function from a token and the client's information to a :class:`Grant` or None. On
Kubernetes the operator's resolver accepts ServiceAccount tokens (docs/security.md,
"Kubernetes identity"). It runs on a worker thread, several requests at once.

Every connection let in under a grant with a pid is *bound* to that pid: :meth:`Issuer.bound`
says under which grant a pid speaks (who asks, for a management request), and
:meth:`Issuer.revoke_pid` closes what a pid has open once its incarnation is over. A client pid
is bound to one identity: a second connection naming it under another is refused.

Which account a grant's namespace lives in is ``account_for`` (one account per namespace by
default, :func:`account_of`; one account for all of them on a cluster, :func:`shared`).

The issuer runs on a thread of its own with its own event loop, so that a busy supervisor
loop (or a test's) never delays a connection, and so that the same object serves ``rebeam
run``, the operator and the test fixtures. A credential it handed out is answered in the
turn its request arrives, written to the socket at once, with the grant's user claims made
when the credential was issued (a restarted actor's connect waits for this answer, while
the run that issued it is busy with the same restart); everything else (the resolver, the
refusals held back) is answered by a task of its own.

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
import contextlib
import json
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from rebeam import _subjects
from rebeam._fastpath import publish_now
from rebeam._loop import within
from rebeam._nats_fixes import connect as nats_connect
from rebeam.auth import jwt
from rebeam.auth.grants import Grant, Role, client_pid_allowed, permissions
from rebeam.auth.nkeys import ACCOUNT, SERVER, KeyPair
from rebeam.errors import TlsError
from rebeam.pids import Pid

__all__ = [
    "ISSUED_PREFIX",
    "Abstain",
    "Issuer",
    "IssuerSecrets",
    "Resolver",
    "account_of",
    "shared",
]

log = logging.getLogger("rebeam.auth")

REFUSAL_DELAY = 0.5  # seconds a primary issuer leaves the others to answer first
ISSUED_PREFIX = "rbm_"  # every credential an issuer hands out starts so
MAX_IN_FLIGHT = 256  # authorization requests answered at once; more are dropped (and counted)
MAX_BOUND = 65536  # pids remembered with their grant (the oldest forgotten first)
_MAX_REQUEST = 64 * 1024
_RECONNECT_WAIT = 0.2

# A token and the client's information (its name, host, ...) -> the grant, or None: not one
# of ours. May block (it is run on a worker thread); PermissionError refuses the connection
# for the reason it gives, any other exception as "could not be checked".
Resolver = Callable[[str, dict[str, Any]], Grant | None]


def account_of(namespace: str) -> str:
    """The NATS account that holds one rebeam namespace."""
    return f"ns_{namespace}"


def shared(account: str) -> Callable[[str], str]:
    """Every namespace in one account (a server whose accounts are fixed in its
    configuration, as on a cluster): namespaces are then kept apart by permissions alone."""

    def account_for(namespace: str) -> str:
        return account

    return account_for


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
    prepared: jwt.Prepared | None = None  # the grant's user claims, ready to sign


@dataclass(frozen=True)
class _Request:
    """An authorization request's fields; ``parsed`` holds its signature, checked before
    anything is done for it."""

    parsed: jwt.Unverified
    user_key: str
    server_id: str
    client: dict[str, Any]
    token: str


@dataclass
class _Answer:
    jwt: str
    refused: bool
    incarnation: int = 0  # the actor incarnation let in, when its steps are recorded
    marks: list[tuple[str, int]] = field(default_factory=list)  # (step, monotonic ns)


@dataclass
class _Binding:
    """A pid that speaks through connections let in under ``grant``."""

    grant: Grant
    connections: set[tuple[str, int]] = field(default_factory=set)


class Abstain(Exception):
    """A resolver raises this for a credential another issuer of the server decides (on
    Kubernetes: a pod of a tree another operator replica drives). Not even a primary
    issuer answers it then: its refusal could arrive before the other issuer's grant."""


@dataclass
class Counters:
    abstained: int = 0  # left to another issuer by the resolver
    granted: int = 0
    refused: int = 0
    malformed: int = 0
    kicked: int = 0
    resolved: int = 0  # granted by the resolver
    overloaded: int = 0  # requests dropped: too many in flight


class Issuer:
    AUTH_USER = "rebeam-issuer"
    SYSTEM_USER = "rebeam-system"

    def __init__(
        self,
        url: str,
        issuer_secrets: IssuerSecrets,
        *,
        primary: bool = True,
        account_for: Callable[[str], str] = account_of,
        resolve: Resolver | None = None,
        tls_ca: str | None = None,
    ) -> None:
        self.url = url
        self.tls_ca = tls_ca  # the CA of a tls:// server; default $REBEAM_NATS_CA (rebeam._tls)
        self.primary = primary
        self.secrets = issuer_secrets
        self.account_for = account_for
        self.resolve = resolve
        self.counters = Counters()
        self._lock = threading.Lock()
        self._credentials: dict[str, _Entry] = {}
        self._bound: OrderedDict[Pid, _Binding] = OrderedDict()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._system: Any = None
        self._refusals_logged = 0
        self._connect_attempts = 1
        self._callout: Any = None  # the connection the server's requests come on
        # Where the steps of an actor's restart are noted (step, incarnation, monotonic ns),
        # if anywhere: rebeam run's, when it records them (docs/sdk.md, "Performance").
        self.steps: Callable[[str, int, int], None] | None = None

    # -- credentials (any thread) ---------------------------------------------------------

    def issue(self, grant: Grant) -> str:
        """A new credential for ``grant``: a token the holder connects with."""
        token = ISSUED_PREFIX + secrets.token_urlsafe(32)
        entry = _Entry(grant)
        with self._lock:
            self._credentials[token] = entry
        loop = self._loop
        if grant.role is not Role.ADMIN and loop is not None:
            # Its user claims are made on the issuer's thread while the holder starts, not
            # when it connects (an admin's wait for the pid it connects as); a stopped
            # issuer's are made, if ever, when asked for.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._prepare_entry, entry)
        return token

    def revoke(self, token: str) -> None:
        """Refuse ``token`` from now on and close what it let in (in the background)."""
        with self._lock:
            entry = self._credentials.pop(token, None)
            if entry is not None and entry.grant.pid is not None:
                self._bound.pop(entry.grant.pid, None)
        if entry is not None:
            self._close(entry.connections)

    def revoke_pid(self, pid: Pid) -> None:
        """The incarnation ``pid`` is over: refuse the credentials issued for it and close
        every connection that speaks as it (in the background)."""
        with self._lock:
            binding = self._bound.pop(pid, None)
            tokens = [t for t, e in self._credentials.items() if e.grant.pid == pid]
            entries = [self._credentials.pop(t) for t in tokens]
        connections = set(binding.connections) if binding else set()
        for entry in entries:
            connections |= entry.connections
        self._close(connections)

    def grant_of(self, token: str) -> Grant | None:
        with self._lock:
            entry = self._credentials.get(token)
        return entry.grant if entry else None

    def bound(self, pid: Pid) -> Grant | None:
        """The grant the connections speaking as ``pid`` were let in under, if any is known."""
        with self._lock:
            binding = self._bound.get(pid)
        return binding.grant if binding else None

    def _close(self, connections: set[tuple[str, int]]) -> None:
        if connections and self._loop is not None and not self._loop.is_closed():
            asyncio.run_coroutine_threadsafe(self._kick(connections), self._loop)

    # -- the service thread -----------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        self._connect_attempts = max(1, int(timeout / _RECONNECT_WAIT))
        self._thread = threading.Thread(target=self._run, name="rebeam-issuer", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout + 2):
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
        # nats-py retries a first connect with the reconnect budget: bound it by start()'s
        # timeout (a server that is not there fails the start), then never give up.
        common: dict[str, Any] = {
            "max_reconnect_attempts": self._connect_attempts,
            "reconnect_time_wait": _RECONNECT_WAIT,
            "error_cb": _connection_error,
        }
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
        for conn in (nc, self._system):
            conn.options["max_reconnect_attempts"] = -1
        self._callout = nc
        await nc.subscribe(_subjects.AUTH_CALLOUT, cb=self._on_request)
        await nc.flush()
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            for task in list(self._in_flight):
                task.cancel()
            for conn in (nc, self._system):
                try:
                    await within(conn.close(), 5)
                except Exception as exc:  # closing is best effort: the server may be gone
                    log.debug("issuer connection close: %s", exc)

    async def _on_request(self, msg: Any) -> None:
        """A credential this issuer handed out is answered here and now: the connection
        waits for it (a restarted actor's, on the restart's path), and everything it takes
        is ready. Any other request is answered by a task of its own: a resolver that waits
        for an API server, or a refusal held back by ``REFUSAL_DELAY``, must not hold up the
        others."""
        received = time.monotonic_ns()
        request = self._read(msg.data)
        if request is None:
            return  # no answer: the server times the connection out
        with self._lock:
            entry = self._credentials.get(request.token)
        if entry is not None:
            answer = self._answer_known(request, entry, received)
            if answer is not None and answer.refused and self.primary:
                self._in_background(self._reply_later(msg, answer))
            elif answer is not None:
                await self._reply(msg, answer)
            return
        self._in_background(self._answer(msg, request))

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        if len(self._in_flight) >= MAX_IN_FLIGHT:
            work.close()
            self.counters.overloaded += 1
            return  # no answer: the server times the connection out, the client retries
        task = asyncio.get_running_loop().create_task(work)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    def _read(self, data: bytes) -> _Request | None:
        """The request's fields, its signature not checked yet (None: malformed)."""
        if len(data) > _MAX_REQUEST:
            self.counters.malformed += 1
            return None
        try:
            parsed = jwt.parse(data, kind="authorization_request", issuer_kind=SERVER)
            info = parsed.claims["nats"]
            user_key = info["user_nkey"]
            server_id = info["server_id"]["id"]
            client = info.get("client_info") or {}
            token = (info.get("connect_opts") or {}).get("auth_token") or ""
        except (jwt.JwtError, KeyError, TypeError, AttributeError) as exc:
            self.counters.malformed += 1
            log.warning("refused a malformed authorization request: %s", exc)
            return None
        if not isinstance(client, dict):
            client = {}
        token = token if isinstance(token, str) else ""
        return _Request(parsed, str(user_key), str(server_id), client, token)

    def _verified(self, request: _Request) -> bool:
        """Whether the server signed the request: checked before anything is done for it."""
        try:
            request.parsed.verified()
        except jwt.JwtError as exc:
            self.counters.malformed += 1
            log.warning("refused a malformed authorization request: %s", exc)
            return False
        return True

    def _answer_known(self, request: _Request, entry: _Entry, received: int) -> _Answer | None:
        """The answer for a credential this issuer handed out (None: the request is not
        the server's)."""
        if not self._verified(request):
            return None
        verified = time.monotonic_ns()
        answer = self._grant(request, entry.grant, entry)
        if answer.incarnation:
            answer.marks = [("callout", received), ("verified", verified), *answer.marks]
        return answer

    async def _answer(self, msg: Any, request: _Request) -> None:
        """A credential this issuer did not hand out: its resolver's to decide, or nobody's
        (the primary issuer refuses it; the others leave it)."""
        token = request.token
        if self.resolve is None or not token or token.startswith(ISSUED_PREFIX):
            if self.primary:
                # Held back, so that the issuer that knows it answers first; the request is
                # checked when it comes to a refusal (the others need no check at all).
                await asyncio.sleep(REFUSAL_DELAY)
                if self._verified(request):
                    await self._reply(msg, self._refuse("unknown or revoked credential", request))
            return
        if not self._verified(request):
            return
        try:
            grant, why = await self._resolve(token, request.client)
        except Abstain:
            self.counters.abstained += 1
            return  # another issuer's to decide, and refuse if it must
        if grant is not None:
            answer = self._grant(request, grant, None)
            await (self._reply_later(msg, answer) if answer.refused else self._reply(msg, answer))
        elif self.primary:
            await self._reply_later(msg, self._refuse(why, request))

    async def _reply_later(self, msg: Any, answer: _Answer) -> None:
        """A refusal, held back so that the issuer that knows the credential answers first."""
        await asyncio.sleep(REFUSAL_DELAY if self.primary else 0)
        await self._reply(msg, answer)

    def _grant(self, request: _Request, grant: Grant, entry: _Entry | None) -> _Answer:
        """Bind the connection to its grant's pid, and let it in with the grant's
        permissions (or refuse it, if its pid speaks for another identity)."""
        client, server_id = request.client, request.server_id
        why = ""
        found: Grant | None = grant
        if grant.role is Role.ADMIN:
            raw_name = client.get("name")
            found, why = _bind_client(grant, raw_name if isinstance(raw_name, str) else "")
        if found is not None and found.pid is not None:
            found, why = self._bind(found, client, server_id, entry)
        elif found is not None and entry is not None:
            with self._lock:
                self._remember(entry.connections, client, server_id)
        if found is None:
            return self._refuse(why, request)
        self.counters.granted += 1
        # A credential's own grant has its claims prepared when it is issued; an admin's
        # (bound to the pid it connects as) or a resolved one's are prepared now.
        if entry is not None and found is grant:
            prepared = self._prepare_entry(entry)
        else:
            prepared = self._prepare(found)
        granted = time.monotonic_ns()
        user_jwt = jwt.sign(prepared, request.user_key, self.secrets.account)
        body = {"jwt": user_jwt}
        answer = _Answer(self._respond(request.user_key, server_id, body), refused=False)
        if self.steps is not None and found.pid is not None and found.role is Role.ACTOR:
            answer.incarnation = found.pid.incarnation
            answer.marks = [("granted", granted), ("signed", time.monotonic_ns())]
        return answer

    def _prepare_entry(self, entry: _Entry) -> jwt.Prepared:
        if entry.prepared is None:
            entry.prepared = self._prepare(entry.grant)
        return entry.prepared

    def _prepare(self, grant: Grant) -> jwt.Prepared:
        """The user claims of ``grant``, all but the connection's own key."""
        claims = {
            "aud": self.account_for(grant.namespace),
            "name": str(grant.pid) if grant.pid else grant.label or grant.role.value,
            "nats": {**permissions(grant), "subs": -1, "data": -1, "payload": -1, "type": "user"},
        }
        return jwt.prepare(claims, self.secrets.account)

    async def _reply(self, msg: Any, answer: _Answer) -> None:
        """The answer, written to the socket now when it can be (the connection waits)."""
        data = answer.jwt.encode()
        if not (msg.reply and publish_now(self._callout, msg.reply, data)):
            await msg.respond(data)
        if answer.incarnation and self.steps is not None:
            for step, at in (*answer.marks, ("replied", time.monotonic_ns())):
                self.steps(f"issuer.{step}", answer.incarnation, at)

    async def _resolve(self, token: str, client: dict[str, Any]) -> tuple[Grant | None, str]:
        assert self.resolve is not None
        try:
            grant = await asyncio.get_running_loop().run_in_executor(
                None, self.resolve, token, client
            )
        except Abstain:
            raise
        except PermissionError as exc:  # the resolver's own words: why not
            return None, str(exc)
        except Exception as exc:
            return None, f"the credential could not be checked: {exc}"
        if grant is None:
            return None, "unknown or revoked credential"
        self.counters.resolved += 1
        return grant, ""

    def _bind(
        self, grant: Grant, client: dict[str, Any], server_id: str, entry: _Entry | None
    ) -> tuple[Grant | None, str]:
        """Bind the connection to its grant's pid; a pid speaks for one identity only."""
        assert grant.pid is not None
        with self._lock:
            binding = self._bound.get(grant.pid)
            if binding is not None and binding.grant != grant:
                return None, f"{grant.pid} is in use by another identity"
            if binding is None:
                binding = self._bound[grant.pid] = _Binding(grant)
                while len(self._bound) > MAX_BOUND:
                    self._bound.popitem(last=False)
            self._bound.move_to_end(grant.pid)
            self._remember(binding.connections, client, server_id)
            if entry is not None:
                self._remember(entry.connections, client, server_id)
        return grant, ""

    @staticmethod
    def _remember(
        connections: set[tuple[str, int]], client: dict[str, Any], server_id: str
    ) -> None:
        cid = client.get("id")
        if isinstance(cid, int):
            connections.add((server_id, cid))

    def _refuse(self, why: str, request: _Request) -> _Answer:
        self.counters.refused += 1
        client = request.client
        if self._refusals_logged < 20 or self.counters.refused % 1000 == 0:
            self._refusals_logged += 1
            log.warning(
                "refused a NATS connection from %s (%s): %s, unless another issuer of this "
                "server knows it [%d refused so far]",
                client.get("host", "?"),
                str(client.get("name", ""))[:80],
                why,
                self.counters.refused,
            )
        body = {"error": why}
        return _Answer(self._respond(request.user_key, request.server_id, body), refused=True)

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
                    _subjects.kick(server_id), json.dumps({"cid": cid}).encode(), 2
                )
                self.counters.kicked += 1
            except Exception as exc:  # the connection may already be gone
                log.debug("kick of connection %d: %s", cid, exc)


async def _connection_error(exc: Exception) -> None:
    """The issuer's connections reconnect by themselves; a failed attempt is no news."""
    log.debug("credential issuer connection: %s", exc)


def _bind_client(grant: Grant, name: str) -> tuple[Grant | None, str]:
    """An admin's connection speaks as the client pid it names when it connects."""
    try:
        pid = Pid.parse(name)
    except ValueError:
        return None, "an admin connection must be named with its client pid"
    if not client_pid_allowed(grant, pid):
        return None, f"{name} is not a client pid of namespace {grant.namespace}"
    return Grant(
        Role.ADMIN, grant.namespace, pid, grant.names, label=grant.label, extra=grant.extra
    ), ""
