"""A node's NATS connection: its credential, its inboxes, its callbacks, and a refusal
said clearly.

nats-py reports on a connection through callbacks given when it opens, before the node it
serves exists (the first connect may already hear from the server): :class:`Connection`
keeps what the server said until then, and passes the rest to the node once it listens.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable
from typing import Any, Protocol

import nats.errors

from rebeam import _subjects
from rebeam._limits import MAX_CREDENTIAL_BYTES, TooLarge, read_bounded
from rebeam._nats_fixes import connect as nats_connect
from rebeam.errors import NotPermitted
from rebeam.pids import Pid

__all__ = ["Connection", "Listener", "credentials_from_environment"]

log = logging.getLogger("rebeam.node")


class Listener(Protocol):
    """What a node hears of its connection."""

    async def on_dropped(self, exc: nats.errors.SlowConsumerError) -> None: ...

    def on_violation(self, error: str) -> None: ...

    def on_disconnected(self) -> None: ...

    def on_reconnected(self) -> None: ...


class Connection:
    """How one node connects: as whom, with what credential, and nats-py's callbacks."""

    def __init__(
        self, pid: Pid, credentials: str | Callable[[], str] | None, tls_ca: str | None
    ) -> None:
        self.pid = pid
        self.credentials = credentials_from_environment() if credentials is None else credentials
        self.tls_ca = tls_ca
        # Every inbox of this connection, nats-py's own (JetStream and KV replies, under
        # "<inbox>n") and the node's call inbox, lies under the pid's inbox prefix: all it
        # may subscribe to. The random token: a reply can only come from someone who was
        # given the reply subject (docs/security.md, "Who may say what").
        self.inbox = f"{_subjects.inbox_prefix(pid)}.{secrets.token_hex(8)}"
        self.listener: Listener | None = None  # the node, once it exists
        self.refusals: list[str] = []  # the server's refusals of our credential

    async def open(
        self,
        url: str,
        *,
        connect_timeout: float,
        reconnect_time_wait: float,
        connect_deadline: float,
        max_reconnect_attempts: int,
    ) -> Any:
        """Connect, trying for ``connect_deadline`` seconds, then reconnect up to
        ``max_reconnect_attempts`` times (-1: for ever); raises :class:`NotPermitted` if
        the server refused the credential."""
        try:
            nc = await nats_connect(
                url,
                name=str(self.pid),
                connect_timeout=connect_timeout,
                # nats-py retries the first connect with the reconnect budget, and -1 would
                # retry forever: bound the first connect, then allow the configured budget.
                max_reconnect_attempts=max(1, int(connect_deadline / reconnect_time_wait)),
                reconnect_time_wait=reconnect_time_wait,
                allow_reconnect=True,
                error_cb=self._error,
                disconnected_cb=self._disconnected,
                reconnected_cb=self._reconnected,
                token=self.credentials,
                inbox_prefix=f"{self.inbox}n",
                tls_ca=self.tls_ca,
            )
        except nats.errors.NoServersError:
            if self.refusals:
                raise self._refused(url) from None
            raise
        nc.options["max_reconnect_attempts"] = max_reconnect_attempts
        return nc

    def _refused(self, url: str) -> NotPermitted:
        why = (
            "no credential was given"
            if not self.credentials
            else "its credential was refused (unknown, revoked, or its pid is in use)"
        )
        return NotPermitted(
            f"NATS at {url} refused {self.pid}: {why} (docs/security.md, 'How a process is let in')"
        )

    async def _error(self, exc: Exception) -> None:
        listener = self.listener
        if isinstance(exc, nats.errors.SlowConsumerError):
            if listener is not None:
                await listener.on_dropped(exc)
            else:
                log.warning("%s: NATS dropped a message on %s", self.pid, exc.subject)
            return
        text = str(exc)
        if "authorization violation" in text.lower():
            self.refusals.append(text)
        if listener is not None and "permissions violation" in text.lower():
            listener.on_violation(text)
            return
        log.debug("%s: NATS error: %s", self.pid, exc)

    async def _disconnected(self) -> None:
        if self.listener is not None:
            self.listener.on_disconnected()

    async def _reconnected(self) -> None:
        if self.listener is not None:
            self.listener.on_reconnected()


def credentials_from_environment() -> str | Callable[[], str] | None:
    """The credential a process was given: ``REBEAM_CREDENTIALS``, or the file named by
    ``REBEAM_CREDENTIALS_FILE`` (what a backend hands a process it starts). The file is read
    now, so that an unreadable one fails the start by name, and again at every reconnection:
    a Kubernetes pod's projected token is such a file, and the kubelet replaces it with a
    fresh token before the old one expires."""
    token = os.environ.get("REBEAM_CREDENTIALS")
    if token:
        return token
    path = os.environ.get("REBEAM_CREDENTIALS_FILE")
    if not path:
        return None
    first = _read_credentials(path)
    if not first:
        return None  # an empty file: no credential (an open server)

    def current() -> str:
        try:
            return _read_credentials(path) or first
        except ConnectionError as exc:  # keep the last good one: the server says if it is stale
            log.warning("%s", exc)
            return first

    return current


def _read_credentials(path: str) -> str:
    """The credential in ``path``; ConnectionError naming the file when it cannot be one
    (docs/sdk.md, "Input limits"): a larger file is refused, not cut to the limit."""
    try:
        data = read_bounded(path, MAX_CREDENTIAL_BYTES)
    except TooLarge:
        raise ConnectionError(
            f"the credential file {path} is larger than {MAX_CREDENTIAL_BYTES // 1024} KiB: "
            "no credential is that long"
        ) from None
    except OSError as exc:
        raise ConnectionError(f"cannot read the credential file {path}: {exc}") from None
    try:
        return data.decode().strip()
    except UnicodeDecodeError:
        raise ConnectionError(f"the credential file {path} is not UTF-8 text") from None
