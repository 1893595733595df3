"""Talking to a running ``rebeam run`` from another terminal.

The run writes an instance file — ``$XDG_STATE_HOME/rebeam/<namespace>.json`` (default
``~/.local/state/rebeam/``) — with its NATS URL, and answers requests on
``rebeam.<ns>.control.<operation>.<requester>``: ``tree``, ``start-child``,
``terminate-child``, ``restart-child``, ``delete-child``, where the requester is the client
pid that asks (the server lets a connection publish there only as itself). Requests and
replies are JSON; a reply is ``{"ok": value}`` or ``{"error": "what went wrong"}``. ``rebeam
events`` needs no control request: it subscribes to the lifecycle events themselves.

Locally, the owner's credential is the only one allowed to make management requests, so a
request that reaches the run is the owner's: the requester is not checked further.

A request is answered only on a request inbox (``_INBOX.`` or ``_INBOX_rebeam.``): a request
with any other reply subject is refused unread, counted and logged at a bounded rate, so
nobody can make this process publish on a subject of their choosing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rebeam import _subjects
from rebeam._limits import loads_json
from rebeam._ratelog import RateLog
from rebeam.local.snapshot import snapshot
from rebeam.supervision import (
    ChildRef,
    DeleteChildRequest,
    Error,
    Event,
    Ok,
    RestartChildRequest,
    StartChildRequest,
    TerminateChildRequest,
)

if TYPE_CHECKING:
    from rebeam.local.runner import LocalRun
    from rebeam.local.supervisors import SupervisorRunner

__all__ = ["OPERATIONS", "ControlServer", "InstanceFile", "NoInstance"]

log = logging.getLogger("rebeam.run")

OPERATIONS = ("tree", "start-child", "terminate-child", "restart-child", "delete-child")

# Requests being answered at once. A request may wait for a tree that is starting (as long as
# its starts take); more than this many at once is somebody flooding the run.
MAX_IN_PROGRESS = 64


class NoInstance(RuntimeError):
    """No ``rebeam run`` is running for that namespace (or its file is stale)."""


@dataclass(frozen=True)
class InstanceFile:
    """The one owner of the instance file: ``rebeam run`` writes it, commands read it.

    It records the run's pid with the time that process started (from ``/proc``), so a file
    left behind by a run that was killed is told apart from a live run even once the pid has
    been reused; a stale file is removed by the first command that finds it."""

    path: Path

    @staticmethod
    def location(namespace: str) -> Path:
        base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        return Path(base) / "rebeam" / f"{namespace}.json"

    @classmethod
    def write(
        cls,
        namespace: str,
        nats_url: str,
        run_id: str,
        *,
        nats_pid: int | None = None,
        credentials: str | None = None,
        nats_ca: str | None = None,
    ) -> InstanceFile:
        """Write (or rewrite: the private server's pid changes when it is restarted). It
        holds the credential of the run's owner, so only its owner may read it
        (docs/security.md), and the CA file of a tls:// server the run was given."""
        path = cls.location(namespace)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = {
            "namespace": namespace,
            "nats_url": nats_url,
            "run_id": run_id,
            "pid": os.getpid(),
            "pid_started": _started(os.getpid()),
            "nats_pid": nats_pid,
            "started": time.time(),
            "credentials": credentials,
            "nats_ca": nats_ca,
        }
        # Whole or not at all: another terminal may read it at any moment. Made 0600 before
        # anything is written to it: it holds a credential.
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(info))
        partial.replace(path)
        return cls(path)

    @classmethod
    def read(cls, namespace: str) -> dict[str, Any]:
        path = cls.location(namespace)
        try:
            text = path.read_text()
            info: dict[str, Any] = loads_json(text, what=str(path))
            if not isinstance(info, dict):
                raise ValueError("not an instance file")
            pid = int(info.get("pid", 0))
        except (OSError, ValueError, TypeError, AttributeError):
            raise NoInstance(
                f"no rebeam run is running for namespace {namespace!r} "
                "(start one with `rebeam run app.yaml`, or pass --nats URL)"
            ) from None
        if not _running(pid, info.get("pid_started")):
            removed = _remove_if_unchanged(path, text)
            raise NoInstance(
                f"the rebeam run for namespace {namespace!r} (pid {pid}) is no longer running"
                + ("; removed its stale instance file" if removed else "")
            )
        return info

    def remove(self) -> None:
        try:
            info = loads_json(self.path.read_bytes(), what=str(self.path))
            # Never remove a newer run's file.
            if isinstance(info, dict) and info.get("pid") == os.getpid():
                self.path.unlink()
        except (OSError, ValueError):
            pass


def _remove_if_unchanged(path: Path, text: str) -> bool:
    """Remove a stale file unless a new run has just written its own there."""
    try:
        if path.read_text() == text:
            path.unlink()
            return True
    except OSError:
        pass
    return False


def _started(pid: int) -> int | None:
    """When the process started (clock ticks after boot), or None where /proc says nothing."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _running(pid: int, started: Any) -> bool:
    """Whether ``pid`` is still the process that started at ``started`` (and not a zombie)."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc here: all we can ask is whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    if fields[0] == "Z":
        return False
    return started is None or fields[19] == str(started)


class ControlServer:
    def __init__(self, run: LocalRun, nc: Any) -> None:
        self.run = run
        self.nc = nc
        self.refused = 0  # requests with a reply subject that is not an inbox
        self.busy = 0  # requests refused because MAX_IN_PROGRESS were being answered
        self._ratelog = RateLog(log, "control")
        self._subscriptions: list[Any] = []
        self._in_progress: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        subject = _subjects.control_subscription(self.run.options.namespace)
        self._subscriptions.append(await self.nc.subscribe(subject, cb=self._accept))

    async def stop(self) -> None:
        for subscription in self._subscriptions:
            try:
                await subscription.unsubscribe()
            except Exception as exc:  # the connection may already be gone at the end
                log.debug("unsubscribe failed: %s", exc)
        for task in list(self._in_progress):
            task.cancel()

    async def _accept(self, msg: Any) -> None:
        """Each request in a task of its own: NATS hands one subscription's messages over
        one at a time, and a request waiting for a starting supervisor must not hold up the
        others (a child's init may be asking a supervisor that runs already)."""
        if len(self._in_progress) >= MAX_IN_PROGRESS:
            self.busy += 1
            self._ratelog.warning("refused a request: too many in progress", msg.subject[:200])
            if msg.reply and _subjects.is_inbox(msg.reply):
                busy = f"busy: {MAX_IN_PROGRESS} requests are being answered; ask again later"
                await msg.respond(json.dumps({"error": busy}).encode())
            return
        task = asyncio.create_task(self._handle(msg))
        self._in_progress.add(task)
        task.add_done_callback(self._in_progress.discard)
        task.add_done_callback(_unanswered)

    async def _handle(self, msg: Any) -> None:
        if msg.reply and not _subjects.is_inbox(msg.reply):
            self.refused += 1
            self._ratelog.warning("refused a request: its reply subject is no inbox", msg.reply)
            return
        parsed = _subjects.control_request(msg.subject)
        try:
            if parsed is None or parsed[0] not in OPERATIONS:
                raise ValueError(f"no such management operation: {msg.subject[:200]}")
            request = loads_json(msg.data or b"{}", what="a control request")
            if not isinstance(request, dict):
                raise ValueError("a control request is a JSON object")
            reply = await self._answer(parsed[0], request)
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        if msg.reply:
            await msg.respond(json.dumps(reply, default=str).encode())

    async def _answer(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        if operation == "tree":
            await self.run.until_started()  # as OTP's which_children waits out an init
            return {"ok": snapshot(self.run)}
        path = str(request.get("path", ""))
        if operation == "start-child":
            runner = await self.run.reach(path)
            if runner is None:
                return {"error": f"no running supervisor at {path!r}"}
            if runner.spec.child_template is None:
                return {"error": f"{path} is not simple_one_for_one: add children to the manifest"}
            args = request.get("args")
            result = await runner.request(lambda rid: StartChildRequest(rid, args=args))
            return _reply(result, runner)
        found = await self.run.parent_of(path)
        if found is None:
            return {"error": f"no running supervisor holds {path!r}"}
        runner, child = found
        makers: dict[str, Callable[[int, str], Event]] = {
            "terminate-child": TerminateChildRequest,
            "restart-child": RestartChildRequest,
            "delete-child": DeleteChildRequest,
        }
        make = makers[operation]
        return _reply(await runner.request(lambda rid: make(rid, child)), runner)


def _unanswered(task: asyncio.Task[None]) -> None:
    """A reply that could not be sent (the connection went at the end): nobody to tell."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("a control reply was not sent: %s", task.exception())


def _reply(result: Ok | Error, runner: SupervisorRunner) -> dict[str, Any]:
    if isinstance(result, Ok):
        value = result.value
        if isinstance(value, ChildRef):  # people address children by path
            return {"ok": f"{runner.path}/{value.id}#{value.incarnation}"}
        return {"ok": value}
    reason = result.reason
    return {"error": str(reason) if not isinstance(reason, str) else reason}
