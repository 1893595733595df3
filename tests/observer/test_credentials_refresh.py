"""The observer's connection across a NATS restart, when its credential changed meanwhile
(docs/observability.md, "Against a cluster"): the token it started with expired (revoked by
the server's issuer) and the credentials file holds a fresh one. Its connection is made with
:func:`rebeam.cli._common.admin_connect`, as ``rebeam observe --nats URL --credentials-file
FILE`` makes it, against a real nats-server that is restarted under it; the subscription the
observer streams from must hear events again, so the fresh credential was presented."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import msgpack
import nats
import pytest

from rebeam import _subjects
from rebeam.cli._common import admin_connect, credentials
from rebeam.natsd import NatsServer

pytestmark = pytest.mark.nats

DEADLINE = 30.0  # a restarted server and the client's next attempt, on a busy machine


def observe_args(server: NatsServer, namespace: str, credentials_file: Path) -> argparse.Namespace:
    """What ``rebeam observe --nats URL --namespace NS --credentials-file FILE`` parses to."""
    return argparse.Namespace(
        nats=server.url,
        namespace=namespace,
        credentials_file=credentials_file,
        nats_ca=None,
        run_id=None,
    )


async def test_a_restart_after_the_token_changed_reconnects_with_the_new_one(
    nats_server: NatsServer, namespace: str, tmp_path: Path
) -> None:
    old = nats_server.admin_credentials(namespace)
    assert old is not None
    credentials_file = tmp_path / "credentials"
    credentials_file.write_text(old + "\n")
    reconnected = asyncio.Event()

    async def on_reconnect() -> None:
        reconnected.set()

    nc, _ = await admin_connect(
        observe_args(nats_server, namespace, credentials_file), reconnected_cb=on_reconnect
    )
    nc.options["allow_reconnect"] = True  # as rebeam observe sets it
    heard: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_event(msg: nats.aio.msg.Msg) -> None:
        await heard.put(msg.data)

    await nc.subscribe(_subjects.events_all(namespace), cb=on_event)
    await nc.flush()
    try:
        # The token expires and its file is given a fresh one; then the server restarts.
        fresh = nats_server.admin_credentials(namespace)
        assert fresh is not None
        credentials_file.write_text(fresh + "\n")
        assert nats_server.issuer is not None
        nats_server.issuer.revoke(old)
        await nats_server.restart_async()

        await asyncio.wait_for(reconnected.wait(), DEADLINE)
        await asyncio.wait_for(nc.flush(), DEADLINE)  # the subscription is back on the server
        payload = msgpack.packb({"event": "started"})
        publisher = await nats.connect(
            nats_server.url, token=nats_server.backend_credentials(namespace)
        )
        try:
            await publisher.publish(_subjects.events(namespace, "started", None), payload)
            await publisher.flush()
        finally:
            await publisher.close()
        assert await asyncio.wait_for(heard.get(), DEADLINE) == payload
    finally:
        await nc.close()


def test_an_unreadable_file_later_keeps_the_last_credential(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The file read at each reconnection: a fresh token is taken; a file being replaced
    (gone, or empty, for a moment) keeps the last one, and stderr says so once a minute."""
    credentials_file = tmp_path / "credentials"
    credentials_file.write_text("first\n")
    args = argparse.Namespace(nats="nats://127.0.0.1:1", credentials_file=credentials_file)
    current = credentials(args)
    assert callable(current)
    assert current() == "first"
    credentials_file.write_text("second")
    assert current() == "second"
    credentials_file.unlink()
    assert current() == "second"
    credentials_file.write_text("")  # being rewritten
    assert current() == "second"
    warned = capsys.readouterr().err.splitlines()
    assert len(warned) == 1, warned
    assert f"cannot read the credentials file {credentials_file}" in warned[0]


@pytest.mark.parametrize(
    ("content", "why"),
    [(b"x" * (64 * 1024 + 1), "larger than 64 KiB"), (b"\xff\xfe", "not UTF-8 text")],
)
def test_a_file_that_holds_no_credential_is_refused_by_name(
    tmp_path: Path, content: bytes, why: str
) -> None:
    credentials_file = tmp_path / "credentials"
    credentials_file.write_bytes(content)
    args = argparse.Namespace(nats="nats://127.0.0.1:1", credentials_file=credentials_file)
    with pytest.raises(OSError, match=why) as refused:
        credentials(args)
    assert str(credentials_file) in str(refused.value)
