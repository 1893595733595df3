"""TLS between rebeam processes and a real nats-server that requires it (docs/security.md,
"TLS"): actors and clients that trust the server's CA talk; every other client is refused
with an error that names TLS, before it sends its credential."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import Launcher
from tests.tlsfiles import make_ca, make_tls_files

import rebeam
from rebeam._nats_fixes import connect as nats_connect
from rebeam.backends import provision
from rebeam.errors import TlsError
from rebeam.natsd import NatsServer, ServerOptions, TlsFiles


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_tls_files(tmp_path / "pki")


@pytest.fixture
def tls_server(
    tmp_path: Path, namespace: str, tls: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> Iterator[NatsServer]:
    """A secured server that speaks only TLS; the test is the tree's owner, and nothing
    in its environment names a CA."""
    monkeypatch.delenv("REBEAM_NATS_CA", raising=False)
    monkeypatch.delenv("REBEAM_NATS_CA_PEM", raising=False)
    server = NatsServer.start(
        tmp_path / "nats", ServerOptions(namespaces=(namespace,), tls=tls, monitoring=True)
    )
    try:
        asyncio.run(_provision(server, namespace))
        monkeypatch.setenv("REBEAM_CREDENTIALS", server.admin_credentials(namespace) or "")
        yield server
    finally:
        server.stop()


async def _provision(server: NatsServer, namespace: str) -> None:
    nc = await nats_connect(
        server.url, token=server.backend_credentials(namespace), tls_ca=server.tls_ca
    )
    try:
        await provision(nc, namespace)
    finally:
        await nc.close()


@pytest.fixture
async def tls_launcher(
    tls_server: NatsServer, namespace: str, tmp_path: Path
) -> AsyncIterator[Launcher]:
    nc = await nats_connect(
        tls_server.url,
        token=tls_server.backend_credentials(namespace),
        tls_ca=tls_server.tls_ca,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.2,
    )
    launcher = Launcher(tls_server.url, namespace, tmp_path, nc, tls_server)
    try:
        yield launcher
    finally:
        await launcher.close()
        with contextlib.suppress(Exception):
            await nc.close()


def _connections(server: NatsServer) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{server.monitor_url}/connz", timeout=5) as answer:
        return list(json.load(answer)["connections"] or [])


async def test_actors_and_a_client_talk_over_tls(
    tls_server: NatsServer, tls_launcher: Launcher, tls: TlsFiles, namespace: str
) -> None:
    assert tls_server.url.startswith("tls://")
    # The two ways a backend hands an actor the CA: a file (rebeam run), the certificates
    # themselves (the operator's pods).
    by_file = await tls_launcher.start(
        "rebeam_test_actors:Probe", env={"REBEAM_NATS_CA": str(tls.ca)}
    )
    by_pem = await tls_launcher.start(
        "rebeam_test_actors:Probe", env={"REBEAM_NATS_CA_PEM": tls.ca.read_text()}
    )
    async with rebeam.connect(tls_server.url, namespace=namespace, tls_ca=str(tls.ca)) as node:
        to_pem = ["try_call", [str(by_pem.pid), ["echo", 7]]]
        to_file = ["try_call", [str(by_file.pid), ["echo", 8]]]
        assert await node.call(by_file.pid, to_pem) == {"ok": 7}
        assert await node.call(by_pem.pid, to_file) == {"ok": 8}
        names = {str(node.pid), str(by_file.pid), str(by_pem.pid)}
        seen = {c.get("name"): c for c in _connections(tls_server)}
        assert names <= seen.keys()
        for name in names:  # every one of them encrypted
            assert seen[name].get("tls_version"), seen[name]


async def test_a_client_without_the_ca_is_refused_at_once(
    tls_server: NatsServer, namespace: str
) -> None:
    started = time.monotonic()
    with pytest.raises(TlsError, match="certificate is not trusted") as refused:
        # A deadline of minutes: a certificate that does not verify is not retried.
        await rebeam.connect(tls_server.url, namespace=namespace, connect_deadline=120)
    assert time.monotonic() - started < 60
    message = str(refused.value)
    assert tls_server.url in message
    assert "the system's trust store" in message
    assert "--nats-ca" in message


async def test_a_client_with_another_ca_is_refused(
    tls_server: NatsServer, namespace: str, tmp_path: Path
) -> None:
    other, _ = make_ca(tmp_path / "other", "someone-else")
    with pytest.raises(TlsError, match=f"certificate is not trusted.*the CA in {other}"):
        await rebeam.connect(tls_server.url, namespace=namespace, tls_ca=str(other))


async def test_a_certificate_for_another_host_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REBEAM_NATS_CA", raising=False)
    elsewhere = make_tls_files(tmp_path / "pki", hosts=("nats.example",), ips=())
    refused = pytest.raises(TlsError, match=r"not for this host.*connect by a name it has")
    with (
        NatsServer.start(tmp_path / "nats", ServerOptions(secure=False, tls=elsewhere)) as server,
        refused,
    ):
        await nats_connect(server.url, tls_ca=str(elsewhere.ca), allow_reconnect=False)


async def test_an_unusable_ca_file_is_named(tls_server: NatsServer, namespace: str, tmp_path: Path):
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(TlsError, match=f"the CA in {garbage} holds no usable PEM certificate"):
        await rebeam.connect(tls_server.url, namespace=namespace, tls_ca=str(garbage))
    with pytest.raises(TlsError, match=f"cannot read the CA file {tmp_path / 'absent.pem'}"):
        await rebeam.connect(
            tls_server.url, namespace=namespace, tls_ca=str(tmp_path / "absent.pem")
        )


async def test_a_plaintext_client_is_refused_by_the_server(
    tls_server: NatsServer, namespace: str
) -> None:
    """A client that does not do TLS (nats-py would upgrade by itself: this one is raw) is
    told so in the server's INFO and disconnected; its CONNECT is never processed."""
    host, port = tls_server.url.removeprefix("tls://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        info = json.loads((await asyncio.wait_for(reader.readline(), 10)).split(b" ", 1)[1])
        assert info["tls_required"] is True
        token = os.environ["REBEAM_CREDENTIALS"]
        writer.write(f"CONNECT {json.dumps({'auth_token': token})}\r\nPING\r\n".encode())
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)  # until the server closes
    finally:
        writer.close()
    assert answer == b""  # closed at once, without a PONG: the CONNECT was never read


async def test_a_tls_url_never_speaks_plaintext(tmp_path: Path, namespace: str) -> None:
    """nats-py alone connects a tls:// URL in plaintext when the server does not ask for
    TLS, sending the credential in the clear; rebeam refuses before CONNECT."""
    with NatsServer.start(tmp_path / "plain", ServerOptions(namespaces=(namespace,))) as plain:
        url = plain.url.replace("nats://", "tls://")
        token = plain.admin_credentials(namespace)
        with pytest.raises(TlsError, match="does not require TLS"):
            await rebeam.connect(url, namespace=namespace, credentials=token)


async def test_no_credential_reaches_a_server_that_drops_the_tls_flag() -> None:
    """Someone between client and server removes ``tls_required`` from the server's INFO:
    the client sends nothing after it."""
    received = bytearray()
    done = asyncio.Event()

    async def stripped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        info = {"server_id": "x", "version": "2.11.0", "max_payload": 1048576, "proto": 1}
        writer.write(f"INFO {json.dumps(info)}\r\n".encode())
        await writer.drain()
        with contextlib.suppress(OSError):
            received.extend(await asyncio.wait_for(reader.read(), 10))
        writer.close()
        done.set()

    listener = await asyncio.start_server(stripped, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        with pytest.raises(TlsError, match="does not require TLS"):
            await nats_connect(f"tls://127.0.0.1:{port}", token="rbm_secret", allow_reconnect=False)
        await asyncio.wait_for(done.wait(), 10)
    finally:
        listener.close()
    assert b"rbm_secret" not in received
    assert bytes(received) == b""


async def test_a_handshake_that_keeps_failing_is_named_after_the_retries() -> None:
    """A server that answers the TLS handshake with garbage: retried (it could be a passing
    fault), then a TlsError that says what failed, not "no servers available"."""
    attempts = 0

    async def garbled(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal attempts
        attempts += 1
        writer.write(b'INFO {"server_id": "x", "tls_required": true, "max_payload": 1024}\r\n')
        with contextlib.suppress(OSError):
            await asyncio.wait_for(reader.read(1), 10)  # the ClientHello
            writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            await writer.drain()
        writer.close()

    listener = await asyncio.start_server(garbled, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        with pytest.raises(TlsError, match="TLS handshake failed"):
            await nats_connect(
                f"tls://127.0.0.1:{port}", max_reconnect_attempts=2, reconnect_time_wait=0.05
            )
    finally:
        listener.close()
    assert attempts >= 2


async def test_an_open_server_speaks_tls_too(
    tmp_path: Path, tls: TlsFiles, caplog: pytest.LogCaptureFixture
) -> None:
    server = NatsServer.start(tmp_path / "open", ServerOptions(secure=False, tls=tls))
    try:
        assert server.url.startswith("tls://")
        with pytest.raises(TlsError):
            await nats_connect(server.url, allow_reconnect=False)
        gone = asyncio.Event()

        async def closed() -> None:
            gone.set()

        nc = await nats_connect(
            server.url, tls_ca=server.tls_ca, allow_reconnect=False, closed_cb=closed
        )
        assert nc.is_connected
        caplog.set_level(logging.WARNING, logger="asyncio")
        server.stop()  # the server ends the TLS connection
        await asyncio.wait_for(gone.wait(), 20)
    finally:
        server.stop()
    assert "eof_received" not in caplog.text  # asyncio's meaningless warning is filtered


async def test_the_cli_connects_with_nats_ca(
    tls_server: NatsServer, tls_launcher: Launcher, tls: TlsFiles, namespace: str
) -> None:
    probe = await tls_launcher.start(
        "rebeam_test_actors:Probe", env={"REBEAM_NATS_CA": str(tls.ca)}
    )
    base = [sys.executable, "-m", "rebeam.cli", "call", str(probe.pid), '["echo", "over tls"]']
    base += ["--nats", tls_server.url, "--namespace", namespace]

    async def cli(*extra: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *base, *extra, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        return proc.returncode or 0, out.decode(), err.decode()

    code, out, err = await cli("--nats-ca", str(tls.ca))
    assert (code, out.strip()) == (0, '"over tls"'), err
    code, out, err = await cli()
    assert code == 1
    assert err.startswith(f"rebeam: NATS at {tls_server.url}: TLS: ")
    assert "Traceback" not in err
