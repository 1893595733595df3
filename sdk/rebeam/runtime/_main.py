"""The actor process: parse the identity, connect, check the slot, init, serve, record the end.

The sequence, which is the contract with every supervisor (docs/runtime-contract.md); the
supervisor claimed the pid's slot (fencing) before the process could connect::

    connect to NATS as the pid          (fails: exit 1, crash recorded)
    subscribe the mailbox and the fence
    read the slot record (fencing),     (a later incarnation exists: exit 1, crash recorded)
      and take the lease, at once       (held: a duplicate launch, exit 1, crash recorded)
    register --name, if given           (taken: exit 1, crash AlreadyRegistered)
    Actor.init(args)                    (raises: exit 1, crash recorded; no terminate)
    write "ready <pid>" to --ready-fd and close it
    serve until stop / crash / SIGTERM (then terminate(shutdown)) / exit signal
        (a backend's kill order on the fence subject: SIGKILL itself, nothing more)
    release own names, answer queued calls with the exit reason
    write the exit reason's wire form to --exit-record; exit 0 if clean, else 1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rebeam import _api, _loop, metrics
from rebeam._actor import Actor, Host, crash_reason
from rebeam._durable import DEFAULT_MAX_DELIVER, DurableMailbox
from rebeam._mailbox import DEFAULT_MAX_BYTES, DEFAULT_MAX_MESSAGES, Limits
from rebeam._node import Node
from rebeam.errors import Refused
from rebeam.exits import NOCONNECTION, SHUTDOWN, ExitReason, crash
from rebeam.pids import Pid
from rebeam.runtime import _steps
from rebeam.runtime._steps import mark

__all__ = ["main", "main_in_loop", "run"]

log = logging.getLogger("rebeam.runtime")

EXIT_CLEAN = 0
EXIT_CRASH = 1


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"REBEAM_{name}", default)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags, each absent one from its ``REBEAM_*`` variable (read now), else its
    default."""
    ns = _parser().parse_args(argv)
    for dest, fallback in _FALLBACKS.items():
        if getattr(ns, dest) is None:
            setattr(ns, dest, fallback())
    return ns


def _ready_fd_env() -> int | None:
    text = _env("READY_FD")
    return int(text) if text else None


# Where an absent flag comes from. Not the parser's defaults: the parser is built once, in
# the zygote before it forks (see prepare), and each actor's environment is its own.
_FALLBACKS: dict[str, Callable[[], Any]] = {
    "target": lambda: _env("ACTOR"),
    "args": lambda: _env("ARGS", "null"),
    "nats": lambda: _env("NATS_URL", "nats://127.0.0.1:4222"),
    "namespace": lambda: _env("NAMESPACE", "default"),
    "pid": lambda: _env("PID"),
    "slot": lambda: _env("SLOT"),
    "incarnation": lambda: int(_env("INCARNATION", "1") or 1),
    "supervisor": lambda: _env("SUPERVISOR"),
    "child": lambda: _env("CHILD"),
    "name": lambda: _env("NAME"),
    "local_scope": lambda: _env("LOCAL_SCOPE"),
    "ready_fd": _ready_fd_env,
    "exit_record": lambda: _env("EXIT_RECORD"),
    "log_level": lambda: _env("LOG_LEVEL", "WARNING"),
    "mailbox_max_messages": lambda: _positive_env("MAILBOX_MAX_MESSAGES"),
    "mailbox_max_bytes": lambda: _positive_env("MAILBOX_MAX_BYTES"),
    "mailbox_durable": lambda: _bool_env("MAILBOX_DURABLE"),
    "mailbox_max_deliver": lambda: _positive_env("MAILBOX_MAX_DELIVER"),
    "metrics_port": lambda: _port_env("METRICS_PORT"),
}


def prepare() -> None:
    """What every actor process would otherwise do first, done once (the zygote calls this
    before it forks): building the flags' parser takes milliseconds."""
    _parser()


@functools.cache
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rebeam.runtime",
        description="Host one rebeam actor in this process. Every flag has a REBEAM_* "
        "environment variable; flags win.",
    )
    p.add_argument("target", nargs="?", help="module:Class (REBEAM_ACTOR)")
    p.add_argument("--args", help="JSON args for init (REBEAM_ARGS)")
    p.add_argument("--nats", help="(REBEAM_NATS_URL; default: nats://127.0.0.1:4222)")
    p.add_argument("--namespace", help="(REBEAM_NAMESPACE; default: default)")
    p.add_argument("--pid", help="the full pid; or --slot/--incarnation")
    p.add_argument("--slot")
    p.add_argument("--incarnation", type=int)
    p.add_argument("--supervisor", help="the supervisor's path")
    p.add_argument("--child", help="the child's name")
    p.add_argument("--name", help="a global name to register before init")
    p.add_argument("--local-scope")
    p.add_argument("--ready-fd", type=int)
    p.add_argument("--exit-record")
    p.add_argument("--log-level", help="(REBEAM_LOG_LEVEL; default: WARNING)")
    p.add_argument(
        "--mailbox-max-messages",
        type=_positive,
        help="messages the mailbox holds before it refuses (REBEAM_MAILBOX_MAX_MESSAGES; "
        f"default: the Actor class's mailbox_max_messages, else {DEFAULT_MAX_MESSAGES})",
    )
    p.add_argument(
        "--mailbox-max-bytes",
        type=_positive,
        help="encoded bytes the mailbox holds before it refuses (REBEAM_MAILBOX_MAX_BYTES; "
        f"default: the Actor class's mailbox_max_bytes, else {DEFAULT_MAX_BYTES})",
    )
    p.add_argument(
        "--mailbox-durable",
        action=argparse.BooleanOptionalAction,
        help="a durable mailbox (JetStream) for sends and casts made with durable=True "
        "(REBEAM_MAILBOX_DURABLE=true|false; default: the Actor class's mailbox_durable)",
    )
    p.add_argument(
        "--mailbox-max-deliver",
        type=_positive,
        help="deliveries of one durable message before it is parked "
        f"(REBEAM_MAILBOX_MAX_DELIVER; default: the class's, else {DEFAULT_MAX_DELIVER})",
    )
    p.add_argument(
        "--metrics-port",
        type=_port,
        help="serve Prometheus metrics over HTTP on this port, on every interface "
        "(REBEAM_METRICS_PORT; default: none; docs/observability.md)",
    )
    return p


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number (1-65535), not {text!r}")
    return value


def _port_env(name: str) -> int | None:
    text = _env(name)
    if not text:
        return None
    try:
        return _port(text)
    except (ValueError, argparse.ArgumentTypeError):
        raise SystemExit(f"REBEAM_{name} must be a port number (1-65535), not {text!r}") from None


def _bool_env(name: str) -> bool | None:
    text = (_env(name) or "").strip().lower()
    if not text:
        return None
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise SystemExit(f"REBEAM_{name} must be true or false, not {text!r}")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return value


def _positive_env(name: str) -> int | None:
    text = _env(name)
    if not text:
        return None
    try:
        return _positive(text)
    except (ValueError, argparse.ArgumentTypeError):
        raise SystemExit(f"REBEAM_{name} must be a positive integer, not {text!r}") from None


def mailbox_limits(ns: argparse.Namespace, actor_cls: type[Actor]) -> Limits:
    """Flags (and their REBEAM_* env) win over the Actor class, which wins over defaults."""
    return Limits(
        max_messages=ns.mailbox_max_messages
        or actor_cls.mailbox_max_messages
        or DEFAULT_MAX_MESSAGES,
        max_bytes=ns.mailbox_max_bytes or actor_cls.mailbox_max_bytes or DEFAULT_MAX_BYTES,
    )


def load_actor(target: str) -> type[Actor]:
    module_name, _, qualname = target.partition(":")
    if not module_name or not qualname:
        raise ValueError(f"expected module:Class, got {target!r}")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, Actor)):
        raise TypeError(f"{target} is not a rebeam.Actor subclass")
    return obj


def identity(ns: argparse.Namespace) -> Pid:
    if ns.pid:
        return Pid.parse(ns.pid)
    if ns.slot:
        return Pid.for_incarnation(ns.namespace, ns.slot, ns.incarnation)
    # Not supervised (run by hand): a slot nobody else has, so the pid is still unique.
    return Pid.for_incarnation(ns.namespace, f"adhoc-{os.urandom(8).hex()}", 1)


def write_record(path: str | None, reason: ExitReason) -> None:
    if not path:
        return
    try:
        Path(path).write_text(json.dumps(reason.to_wire()))
    except (OSError, TypeError, ValueError) as exc:
        log.error("cannot write the exit record to %s: %s", path, exc)


def signal_ready(fd: int | None, pid: Pid) -> None:
    if fd is None:
        return
    try:
        os.write(fd, f"ready {pid}\n".encode())
    finally:
        os.close(fd)


async def run(ns: argparse.Namespace) -> ExitReason:
    """Everything between parsing the flags and exiting; returns the exit reason."""
    pid = identity(ns)
    mark("loop", pid.incarnation)
    try:
        actor_cls = load_actor(ns.target or "")
        args = json.loads(ns.args) if ns.args else None
        limits = mailbox_limits(ns, actor_cls)
    except Exception as exc:
        return crash_reason(exc)
    mark("loaded", pid.incarnation)
    node = await _connect(ns, pid, limits)
    if isinstance(node, ExitReason):
        return node
    mark("connected", pid.incarnation)
    _api.set_default_node(node)
    _metrics(ns, node)
    host = Host(node, actor_cls())
    host.hold_turn_for_init()  # from the mailbox's subscription until init has returned
    refused = await _start(node)
    if refused is not None:
        return refused
    mark("slot checked", pid.incarnation)
    node.on_lease_lost = lambda: host.request_stop(NOCONNECTION)
    node.on_kill_order = _killed  # brutal_kill: no terminate, no exit record
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, host.request_stop, SHUTDOWN)
    loop.add_signal_handler(signal.SIGINT, host.request_stop, SHUTDOWN)
    reason = await _init(ns, node, host, args)
    durable = _durable_mailbox(ns, node, host, actor_cls) if reason is None else None
    if durable is not None:
        try:
            await durable.start()
        except Exception as exc:
            reason = crash(exception_type=type(exc).__name__, message=f"durable mailbox: {exc}")
    if reason is not None:  # a failed start: no terminate, as in OTP
        await host.finish(reason)
        await node.close(reason)
        return reason
    mark("init done", pid.incarnation)
    signal_ready(ns.ready_fd, pid)
    reason = await host.run()
    if durable is not None:
        await durable.stop()
    _log_refusals(node, pid)
    await node.close(reason)
    return reason


def _killed() -> None:
    """Die as a SIGKILL from outside would kill us: the supervisor reads exit 137 as
    ``killed``."""
    os.kill(os.getpid(), signal.SIGKILL)


async def _connect(ns: argparse.Namespace, pid: Pid, limits: Limits) -> Node | ExitReason:
    try:
        return await Node.connect(
            ns.nats,
            namespace=pid.namespace,
            pid=pid,
            is_client=False,
            local_scope=ns.local_scope,
            mailbox_limits=limits,
            max_reconnect_attempts=-1,
            start=False,  # the host must be in place before the mailbox is subscribed
        )
    except Exception as exc:
        return crash(exception_type=type(exc).__name__, message=f"cannot connect: {exc}")


async def _start(node: Node) -> ExitReason | None:
    """Start taking messages, unless this launch is stale or a duplicate; the reason it
    cannot, with the node closed.

    The subscriptions go out first, the slot read after them on the same connection, so the
    server has our fence subscription before it reads the record for us: a later
    incarnation claimed after that read still fences us. The lease, the slot read and the
    flush are independent round trips, made together, on buckets the backend created."""
    try:
        await node.subscribe()
        # The backend created the buckets before it started us: no lookup before the slot
        # read and the lease, which would be a round trip ahead of each.
        node.store.assume_provisioned()
        results = await asyncio.gather(
            node.superseded_by(),
            node.take_lease(provisioned=True),
            node.nc.flush(),
            return_exceptions=True,
        )
        for result in results:  # all have ended: none is left running when the node closes
            if isinstance(result, BaseException):
                raise result
        later = results[0]
        if later is not None:  # a stale launch: it never takes a message
            raise Refused(f"{node.pid} is superseded: {later} of this slot already started")
    except Refused as exc:  # superseded, or this pid is already running: a duplicate launch
        await node.close()
        return crash_reason(exc)
    except Exception as exc:
        await node.close()
        return crash(exception_type=type(exc).__name__, message=f"cannot start: {exc}")
    return None


async def _init(ns: argparse.Namespace, node: Node, host: Host, args: Any) -> ExitReason | None:
    """Register the name and run the actor's init; the reason the start failed, if it did."""
    try:
        if ns.name:
            await node.register(ns.name)
        mark("registered", node.pid.incarnation)
        return await host.init(args)
    except Exception as exc:
        return crash_reason(exc)


def _durable_mailbox(
    ns: argparse.Namespace, node: Node, host: Host, actor_cls: type[Actor]
) -> DurableMailbox | None:
    """The durable mailbox the flags or the actor class ask for, not started yet."""
    wants_durable = ns.mailbox_durable
    if not (wants_durable if wants_durable is not None else actor_cls.mailbox_durable):
        return None
    max_deliver = ns.mailbox_max_deliver or actor_cls.mailbox_max_deliver or DEFAULT_MAX_DELIVER
    return DurableMailbox(node, host, max_deliver)


def _metrics(ns: argparse.Namespace, node: Node) -> None:
    """Label this process's metrics with its place in the tree; serve them if asked. A port
    that cannot be bound is logged, not fatal: the actor works without its metrics."""
    node.metrics.where(ns.supervisor, ns.child)
    if ns.metrics_port is None:
        return
    try:
        metrics.serve(ns.metrics_port)
    except OSError as exc:
        log.error("cannot serve metrics on port %d: %s", ns.metrics_port, exc)


def _log_refusals(node: Node, pid: Pid) -> None:
    stats = node.stats
    if stats.mailbox_refused or stats.slow_consumer_drops:
        log.warning(
            "%s refused %d messages (mailbox full); NATS dropped %d elsewhere",
            pid,
            stats.mailbox_refused,
            stats.slow_consumer_drops,
        )


def main(argv: list[str] | None = None) -> int:
    ns = _begin(argv)
    try:
        reason = _loop.run(run(ns))
    except BaseException as exc:  # the runtime itself failed: still leave a record
        reason = _failed(exc)
    return _finish(ns, reason)


async def main_in_loop(argv: list[str]) -> int:
    """:func:`main` in a process whose event loop already runs: the zygote's standby made
    and started its loop before it knew which actor it would be."""
    ns = _begin(argv)
    try:
        reason = await run(ns)
    except Exception as exc:  # the runtime itself failed: still leave a record
        reason = _failed(exc)
    return _finish(ns, reason)


def _begin(argv: list[str] | None) -> argparse.Namespace:
    ns = parse_args(argv)
    if _steps.ON:
        mark("main", identity(ns).incarnation)
    logging.basicConfig(
        level=getattr(logging, str(ns.log_level).upper(), logging.WARNING),
        format=f"%(asctime)s %(levelname)s {ns.child or 'actor'}: %(message)s",
        stream=sys.stderr,
    )
    return ns


def _failed(exc: BaseException) -> ExitReason:
    reason = crash_reason(exc)
    log.error("runtime failed: %s", reason)
    return reason


def _finish(ns: argparse.Namespace, reason: ExitReason) -> int:
    write_record(ns.exit_record, reason)
    if not reason.is_clean:
        log.error("exiting: %s", reason)
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    return EXIT_CLEAN if reason.is_clean else EXIT_CRASH
