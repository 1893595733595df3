"""The issuer against a real nats-server: a resolver for credentials it did not issue, pids
bound to one identity, revocation by pid, and requests answered side by side."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from rebeam import _subjects
from rebeam.auth import issuer as issuer_module
from rebeam.auth.grants import Grant, Role
from rebeam.auth.issuer import REFUSAL_DELAY, Abstain, Issuer, IssuerSecrets, shared
from rebeam.natsd import NatsServer, ServerOptions
from rebeam.pids import Pid

NS = "team-a"
ACCOUNT = "REBEAM"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    """A server whose own issuer is secondary: the issuer under test is the primary one."""
    with NatsServer.start(
        tmp_path / "nats", ServerOptions(shared_account=ACCOUNT, primary_issuer=False)
    ) as started:
        yield started


def start_issuer(server: NatsServer, resolve: Any) -> Issuer:
    assert server.secrets is not None
    issuer = Issuer(server.url, server.secrets, account_for=shared(ACCOUNT), resolve=resolve)
    issuer.start()
    return issuer


async def connect(server: NatsServer, token: str, pid: Pid, **options: Any) -> Any:
    return await nats.connect(
        server.url,
        token=token,
        name=str(pid),
        inbox_prefix=f"{_subjects.inbox_prefix(pid)}.t",
        allow_reconnect=False,
        connect_timeout=5,
        **options,
    )


async def refused(server: NatsServer, token: str, pid: Pid) -> str:
    with pytest.raises(nats.errors.Error) as caught:
        await connect(server, token, pid)
    return str(caught.value).lower()


async def test_a_resolver_admits_what_it_recognises_and_binds_the_pid(server: NatsServer) -> None:
    actor = Pid.for_incarnation(NS, "slot", 1)
    seen: list[str] = []

    def resolve(token: str, client: dict[str, Any]) -> Grant | None:
        seen.append(token)
        if token == "pod-token":
            return Grant(Role.ACTOR, NS, actor, label="pod")
        raise PermissionError("not a valid Kubernetes token")

    issuer = start_issuer(server, resolve)
    try:
        nc = await connect(server, "pod-token", actor)
        await nc.publish(_subjects.mailbox(actor, actor), b"x")
        await nc.flush()
        await nc.close()
        assert issuer.bound(actor) == Grant(Role.ACTOR, NS, actor, label="pod")
        assert issuer.counters.resolved == 1
        assert "authorization" in await refused(server, "stolen", actor)
        assert issuer.counters.refused == 1
        # An issuer's own tokens never reach the resolver.
        assert "authorization" in await refused(server, "rbm_unknown", actor)
        assert seen == ["pod-token", "stolen"]
    finally:
        issuer.stop()


async def test_a_client_pid_speaks_for_one_identity(server: NatsServer) -> None:
    def resolve(token: str, client: dict[str, Any]) -> Grant | None:
        return Grant(Role.ADMIN, NS, label=token)  # the token names the person

    issuer = start_issuer(server, resolve)
    try:
        pid = Pid.for_client(NS)
        alice = await connect(server, "alice", pid)
        assert issuer.bound(pid) is not None
        assert issuer.bound(pid).label == "alice"
        assert "authorization" in await refused(server, "mallory", pid)
        again = await connect(server, "alice", pid)  # the same person, again: fine
        await again.close()
        await alice.close()
    finally:
        issuer.stop()


async def test_revoking_a_pid_closes_its_connections_and_refuses_its_token(
    server: NatsServer,
) -> None:
    issuer = start_issuer(server, None)
    try:
        pid = Pid.for_incarnation(NS, "slot", 2)
        token = issuer.issue(Grant(Role.ACTOR, NS, pid))
        closed = asyncio.Event()

        async def on_closed() -> None:
            closed.set()

        nc = await connect(server, token, pid, closed_cb=on_closed)
        issuer.revoke_pid(pid)
        await asyncio.wait_for(closed.wait(), 10)
        assert nc.is_closed
        assert issuer.bound(pid) is None
        assert "authorization" in await refused(server, token, pid)
    finally:
        issuer.stop()


async def test_a_slow_resolver_holds_up_no_other_connection(server: NatsServer) -> None:
    """Requests are answered side by side: a resolver waiting for an API server does not
    delay a credential the issuer knows (here the slow one waits until the other is in)."""
    released = threading.Event()

    def resolve(token: str, client: dict[str, Any]) -> Grant | None:
        if not released.wait(10):
            raise PermissionError("never released")
        return Grant(Role.ADMIN, NS, label="slow")

    issuer = start_issuer(server, resolve)
    try:
        slow = asyncio.create_task(connect(server, "slow", Pid.for_client(NS)))
        fast_pid = Pid.for_incarnation(NS, "fast", 1)
        fast = await connect(server, issuer.issue(Grant(Role.ACTOR, NS, fast_pid)), fast_pid)
        released.set()
        await (await slow).close()
        await fast.close()
    finally:
        released.set()
        issuer.stop()


def test_an_issuer_without_a_server_fails_its_start_and_leaves_no_thread() -> None:
    """A backend retries while NATS is not up yet (the operator starting with its cluster):
    each failed start must end, not leave a thread retrying forever."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nobody listens there
    issuer = Issuer(f"nats://127.0.0.1:{port}", IssuerSecrets.create())
    with pytest.raises(RuntimeError, match="failed"):
        issuer.start(timeout=1)
    thread = issuer._thread
    issuer.stop()
    assert thread is not None
    assert not thread.is_alive()


async def test_a_resolver_may_leave_a_credential_to_another_issuer(server: NatsServer) -> None:
    """Two primary issuers (two operator replicas): the one that knows the pod grants it,
    slowly; the other abstains. Had it refused, its refusal (held back REFUSAL_DELAY) would
    have been the server's answer, before the grant."""
    actor = Pid.for_incarnation(NS, "slot", 1)

    def grants(token: str, client: dict[str, Any]) -> Grant | None:
        threading.Event().wait(REFUSAL_DELAY * 2)  # an API server that takes its time
        return Grant(Role.ACTOR, NS, actor, label="pod")

    def abstains(token: str, client: dict[str, Any]) -> Grant | None:
        raise Abstain("a pod of another replica")

    owner, other = start_issuer(server, grants), start_issuer(server, abstains)
    try:
        nc = await connect(server, "pod-token", actor)
        await nc.close()
        assert (other.counters.abstained, other.counters.refused) == (1, 0)
        assert owner.counters.resolved == 1
    finally:
        owner.stop()
        other.stop()


async def test_a_credential_it_handed_out_gets_in_while_slow_requests_fill_the_issuer(
    server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests for the resolver are answered by tasks, at most MAX_IN_FLIGHT at once (more
    are dropped); a credential the issuer handed out is answered at once, without a task of
    its own: a run's restarted actors get in while a resolver is stuck."""
    monkeypatch.setattr(issuer_module, "MAX_IN_FLIGHT", 2)
    entered, released = threading.Semaphore(0), threading.Event()

    def resolve(token: str, client: dict[str, Any]) -> Grant | None:
        entered.release()
        if not released.wait(10):
            raise PermissionError("never released")
        raise PermissionError("released")

    issuer = start_issuer(server, resolve)
    slow = [asyncio.create_task(connect(server, f"slow-{i}", Pid.for_client(NS))) for i in range(2)]
    try:
        for _ in slow:  # both in flight: the issuer takes no other slow request now
            assert await asyncio.to_thread(entered.acquire, True, 10)
        pid = Pid.for_incarnation(NS, "fast", 1)
        fast = await connect(server, issuer.issue(Grant(Role.ACTOR, NS, pid)), pid)
        assert fast.is_connected
        await fast.close()
        assert issuer.counters.overloaded == 0
        assert issuer.bound(pid) == Grant(Role.ACTOR, NS, pid)
    finally:
        released.set()
        await asyncio.gather(*slow, return_exceptions=True)  # refused: released to refuse
        issuer.stop()
