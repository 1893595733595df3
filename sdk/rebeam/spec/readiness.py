"""A ``readiness`` block as the readiness entry's command line (rebeam.readiness), for both
backends: ``rebeam run`` spawns it, and the operator makes it the pod's command."""

from __future__ import annotations

from rebeam.readiness import check_argument
from rebeam.spec.models import ActorTemplate, Readiness

__all__ = ["entry_arguments", "uses_entry"]


def uses_entry(template: ActorTemplate) -> bool:
    """A command with a readiness kind other than ``spawned`` starts through the entry; any
    other child is started as it always was (a command once spawned, an actor once its init
    returned)."""
    readiness = template.readiness
    return bool(template.command) and readiness is not None and readiness.kind != "spawned"


def _check(readiness: Readiness) -> str:
    kind = readiness.kind
    assert kind not in (None, "spawned")
    settings: dict[str, object] = {}
    if readiness.tcp is not None:
        settings = {"port": readiness.tcp.port}
    elif readiness.http is not None:
        settings = {"port": readiness.http.port, "path": readiness.http.path}
    elif readiness.exec_ is not None:
        settings = {"command": list(readiness.exec_.command)}
    watchdog = readiness.watchdog.interval if readiness.watchdog else None
    return check_argument(kind, settings, watchdog)


def entry_arguments(
    template: ActorTemplate,
    *,
    ready_fd: str,
    exit_record: str,
    notify_dir: str | None = None,
    quiet: bool = False,
) -> list[str]:
    """The entry's arguments (after ``python -m rebeam.readiness`` or its file) for a
    template that :func:`uses_entry`: where to say ready, then the command itself."""
    assert template.command is not None
    assert template.readiness is not None
    args = template.args if isinstance(template.args, list) else []
    return [
        "--ready-fd",
        ready_fd,
        "--exit-record",
        exit_record,
        *(["--notify-dir", notify_dir] if notify_dir else []),
        "--check",
        _check(template.readiness),
        *(["--quiet"] if quiet else []),
        "--",
        *template.command,
        *(str(a) for a in args),
    ]
