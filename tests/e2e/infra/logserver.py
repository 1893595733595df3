"""The test kubelet's HTTPS endpoint for container logs: what ``kubectl logs`` reaches.

``kubectl logs`` asks the API server for ``pods/log``; the API server calls the pod's node at
its InternalIP, on the port the Node's ``status.daemonEndpoints.kubeletEndpoint`` names:
``GET /containerLogs/{namespace}/{pod}/{container}``, over TLS, presenting its kubelet client
certificate (the control plane's ``--kubelet-client-certificate``). This server takes only a
client certificate of the cluster's CA with that name (others get 403, no certificate no TLS
session), and answers from the log files the pod worker writes, in both modes:

- ``tailLines=N``: the last N lines; ``limitBytes=N``: at most N bytes;
- ``previous=true``: the run before the current one (400 if there was none, as a kubelet);
- ``follow=true``: the file as it grows, until the container's run has ended.

Anything else in the query is ignored (``timestamps``, ``sinceSeconds``): the log files keep
no time of their own. Unknown paths are 404. It runs on the kubelet's event loop.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from .pki import KUBELET_CLIENT_NAME, Pki, issue_kubelet_serving

__all__ = ["LogServer", "LogSource"]


# (log file, whether the run is still going) of a container's current or previous run; raises
# LookupError for an unknown pod or container, or a previous run that does not exist.
LogSource = Callable[[str, str, str, bool], tuple[Path, Callable[[], bool]]]

FOLLOW_POLL = 0.1  # seconds between looks at a followed file
CHUNK = 64 * 1024
MAX_TAIL_BYTES = 16 * 2**20  # tailLines reads at most this much from the end of a file


class LogServer:
    """Serves ``/containerLogs/...`` for one node on ``host``:``port`` (0: the OS picks)."""

    def __init__(self, pki: Pki, directory: Path, node: str, host: str, source: LogSource) -> None:
        self.source = source
        cert, key = issue_kubelet_serving(pki, directory, node, host)
        self.ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca_cert))
        self.ssl.load_cert_chain(cert, key)
        self.ssl.verify_mode = ssl.CERT_REQUIRED  # the API server's client certificate
        self.host = host
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        app = web.Application()
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self._logs)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((self.host, 0))  # a port of its own, known before the Node is registered
        self.port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock, ssl_context=self.ssl).start()
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        names = [value for rdn in (peer or {}).get("subject", ()) for key, value in rdn]
        if KUBELET_CLIENT_NAME not in names:
            raise web.HTTPForbidden(text="only the API server's kubelet client may read logs\n")
        query = request.query
        match = request.match_info
        previous = query.get("previous") == "true"
        try:
            tail = _count(query.get("tailLines"), "tailLines")
            limit = _count(query.get("limitBytes"), "limitBytes")
            path, running = self.source(
                match["namespace"], match["pod"], match["container"], previous
            )
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from exc
        except LookupError as exc:
            status = web.HTTPBadRequest if previous else web.HTTPNotFound
            raise status(text=f"{exc}\n") from exc
        response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        await response.prepare(request)
        follow = query.get("follow") == "true" and not previous
        await _send(response, path, tail, limit, follow, running)
        await response.write_eof()
        return response


def _count(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or len(value) > 12:
        raise ValueError(f"{name}={value[:20]!r}: a non-negative integer")
    return int(value)


async def _send(
    response: web.StreamResponse,
    path: Path,
    tail: int | None,
    limit: int | None,
    follow: bool,
    running: Callable[[], bool],
) -> None:
    try:
        handle = open(path, "rb")  # noqa: SIM115, ASYNC230 - local, read in small chunks
    except FileNotFoundError:
        return  # the run has not written anything yet
    sent = 0

    async def write(data: bytes) -> bool:
        """Send ``data`` within limitBytes; False once the limit is reached."""
        nonlocal sent
        if limit is not None:
            data = data[: limit - sent]
        if data:
            await response.write(data)
            sent += len(data)
        return limit is None or sent < limit

    with handle:
        size = handle.seek(0, 2)  # without follow: what the file held when asked
        if tail is not None:
            handle.seek(max(0, size - MAX_TAIL_BYTES))
            lines = handle.read(size - handle.tell()).splitlines(keepends=True)
            if not await write(b"".join(lines[-tail:]) if tail else b""):
                return
        else:
            handle.seek(0)
        while True:
            chunk = handle.read(CHUNK if follow else min(CHUNK, size - handle.tell()))
            if chunk:
                if not await write(chunk):
                    return
                continue
            if not follow:
                return
            if not running():
                await write(handle.read())  # what it wrote just before it ended
                return
            await asyncio.sleep(FOLLOW_POLL)
