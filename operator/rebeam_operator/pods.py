"""Pod specs: one pod per incarnation of an actor child, never restarted by the kubelet.

The pod of incarnation ``n`` of child ``c`` under host ``h`` is named ``h-c-n`` (``h-n`` for an
Actor applied on its own). The name is deterministic, so a create repeated after an operator
restart is refused with 409 instead of starting a second process of one incarnation.

Every pod runs hardened (docs/security.md, "Kubernetes"): as the non-root user of the actor
image, without privilege escalation or capabilities, under the runtime's default seccomp
profile, on a read-only root filesystem with an emptyDir at ``/tmp``, and without a token for
the Kubernetes API (actors never call it). A manifest cannot change this.

Its NATS credential is a projected ServiceAccount token for the audience ``rebeam-nats``
only (useless against the API server), bound to the pod, which the kubelet renews before it
expires. The pod's environment names its file, ``REBEAM_CREDENTIALS_FILE``; the token itself is
never in the pod spec (identity.py says how the operator checks it).
"""

from __future__ import annotations

import json
import math
from typing import Any

from rebeam._tls import ENV_CA_PEM
from rebeam.pids import Pid
from rebeam.spec.models import ActorTemplate, Child, Readiness
from rebeam.spec.readiness import entry_arguments, uses_entry
from rebeam.spec.runtime_env import mailbox_env
from rebeam.supervision import BRUTAL_KILL, INFINITY, Shutdown
from rebeam_operator import metrics
from rebeam_operator.hosts import (
    ANN_DECIDED_SEQ,
    ANN_PATH,
    ANN_PID,
    LABEL_CHILD,
    LABEL_HOST,
    LABEL_INCARNATION,
    LABEL_MANAGED,
    LABEL_SUPERVISOR,
    MANAGED_BY,
    Host,
)
from rebeam_operator.nats_ca import ca_bundle
from rebeam_operator.settings import TERMINATION_MESSAGE_PATH, Settings

__all__ = [
    "CONTAINER",
    "INFINITE_GRACE",
    "READINESS_PROBE",
    "RUN_AS",
    "SCRATCH",
    "TOKEN_AUDIENCE",
    "TOKEN_FILE",
    "grace_seconds",
    "kubelet_probes",
    "pod_manifest",
    "runtime_command",
]

CONTAINER = "actor"
INFINITE_GRACE = 24 * 3600  # shutdown: infinity (a pod's grace period must be a number)
RUN_AS = 10001  # the uid and gid of the user images/actor.Dockerfile creates
SCRATCH = "/tmp"  # the one writable directory of an actor pod: an emptyDir
TOKEN_AUDIENCE = "rebeam-nats"  # the pod's NATS credential is good for this audience only
TOKEN_DIR = "/var/run/secrets/rebeam"
TOKEN_FILE = f"{TOKEN_DIR}/nats-token"
TOKEN_SECONDS = 3600  # the kubelet renews it at 80% of this

Json = dict[str, Any]


def grace_seconds(shutdown: Shutdown) -> int:
    """A child's shutdown as a pod's grace period: brutal_kill is 0 (SIGKILL at once)."""
    if shutdown == BRUTAL_KILL:
        return 0
    if shutdown == INFINITY:
        return INFINITE_GRACE
    return max(1, math.ceil(float(shutdown)))


# Starting a child is synchronous in OTP: the supervisor waits until init has returned. The
# runtime says so on --ready-fd; in a pod that descriptor is a file the readiness probe reads,
# so an actor counts as started when its pod is Ready (init done, name registered).
#
# The file lives in $HOME when a file can be made there, else in /tmp: with a read-only root
# filesystem the image's HOME is not writable, and HOME then becomes /tmp for the runtime too
# (libraries that keep files in HOME need it writable). A kubelet that gives each pod a HOME
# of its own but shares /tmp (the e2e process kubelet) keeps it in HOME. The run command and
# the probe make the same test, so they name the same file. `true >>` creates the file or
# leaves it as it is; a write attempt, unlike `test -w`, also sees a read-only mount.
READY_FILE = '"$HOME/.rebeam-ready"'
_PICK_HOME = f'{{ true >>"${{HOME:-/}}/.rebeam-ready"; }} 2>/dev/null || HOME={SCRATCH}'
_RUN = f'{_PICK_HOME}; export HOME; exec python -m rebeam.runtime "$@" --ready-fd 3 3>{READY_FILE}'
READINESS_PROBE: Json = {
    "exec": {"command": ["sh", "-c", f"{_PICK_HOME}; grep -q ready {READY_FILE}"]},
    "periodSeconds": 1,
    "failureThreshold": 1,
    "successThreshold": 1,
}


# A command with a readiness block runs under the readiness entry (rebeam.readiness), which
# writes the same ready line to the same file once the command is ready: it then goes through
# the same probe, so the operator reports it started only when ready, as rebeam run does.
_RUN_ENTRY = f'{_PICK_HOME}; export HOME; exec python -m rebeam.readiness "$@" 3>{READY_FILE}'


def runtime_command(actor: ActorTemplate, exit_record: str = TERMINATION_MESSAGE_PATH) -> list[str]:
    if uses_entry(actor):
        arguments = entry_arguments(actor, ready_fd="3", exit_record=exit_record, quiet=True)
        return ["sh", "-c", _RUN_ENTRY, "rebeam-readiness", *arguments]
    if actor.command:
        extra = actor.args if isinstance(actor.args, list) else []
        return [*actor.command, *(str(a) for a in extra)]
    assert actor.module is not None
    return ["sh", "-c", _RUN, "rebeam-runtime", actor.module, "--args", json.dumps(actor.args)]


def _label(value: str) -> str:
    return value if len(value) <= 63 else value[:63].rstrip("-.")


def _pod_security_context() -> Json:
    """The image's non-root user whatever the image says (runAsNonRoot alone would refuse an
    image that runs as root instead of running it as someone else); fsGroup so that volumes
    are the user's."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container_security_context() -> Json:
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _token_volume() -> Json:
    """The pod's NATS credential: its ServiceAccount's token for ``rebeam-nats`` only."""
    token = {"audience": TOKEN_AUDIENCE, "expirationSeconds": TOKEN_SECONDS, "path": "nats-token"}
    return {"name": "nats-token", "projected": {"sources": [{"serviceAccountToken": token}]}}


def pod_manifest(
    host: Host,
    child: Child,
    incarnation: int,
    pid: Pid,
    shutdown: Shutdown,
    slot_owner: Json,
    settings: Settings,
    *,
    decided_seq: int,
) -> Json:
    actor = child.actor
    assert actor is not None
    env = _environment(host, child.name, actor, pid, settings)
    pod: Json = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _metadata(host, child.name, incarnation, pid, slot_owner, decided_seq),
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": grace_seconds(shutdown),
            "automountServiceAccountToken": False,
            "securityContext": _pod_security_context(),
            "containers": [_container(actor, env, settings, child.start_timeout)],
            "volumes": [
                # Bounded by the pod's ephemeral storage: an actor's `resources` may limit it.
                {"name": "tmp", "emptyDir": {}},
                _token_volume(),
            ],
        },
    }
    metrics.expose(pod, settings.actor_metrics_port if actor.module else None)
    return pod


def _metadata(
    host: Host, child: str, incarnation: int, pid: Pid, slot_owner: Json, decided_seq: int
) -> Json:
    return {
        "name": host.pod_name(child, incarnation),
        "namespace": host.namespace,
        "labels": {
            LABEL_MANAGED: MANAGED_BY,
            LABEL_HOST: host.uid,
            LABEL_SUPERVISOR: _label(host.name),
            LABEL_CHILD: child,
            LABEL_INCARNATION: str(incarnation),
        },
        "annotations": {
            ANN_PATH: host.path,
            ANN_PID: str(pid),
            # Which status write holds the decision to start it (early_starts.py).
            ANN_DECIDED_SEQ: str(decided_seq),
        },
        "ownerReferences": [slot_owner],
    }


def _environment(
    host: Host, child: str, actor: ActorTemplate, pid: Pid, settings: Settings
) -> list[Json]:
    env: list[Json] = [
        {"name": "REBEAM_NATS_URL", "value": settings.nats_url},
        {"name": "REBEAM_NAMESPACE", "value": host.namespace},
        {"name": "REBEAM_PID", "value": str(pid)},
        {"name": "REBEAM_SUPERVISOR", "value": host.path},
        {"name": "REBEAM_CHILD", "value": child},
        {"name": "REBEAM_EXIT_RECORD", "value": settings.exit_record},
        {"name": "REBEAM_CREDENTIALS_FILE", "value": TOKEN_FILE},
    ]
    if actor.register_as:
        env.append({"name": "REBEAM_NAME", "value": actor.register_as})
    if settings.lease_ttl is not None:
        env.append({"name": "REBEAM_LEASE_TTL", "value": str(settings.lease_ttl)})
    if settings.nats_ca and (ca := ca_bundle(settings.nats_ca)):
        env.append({"name": ENV_CA_PEM, "value": ca})  # why in env: nats_ca.py
    env += [{"name": name, "value": value} for name, value in mailbox_env(actor).items()]
    # The root filesystem is read-only: Python need not try to write bytecode caches there.
    env.append({"name": "PYTHONDONTWRITEBYTECODE", "value": "1"})
    for var in actor.env:
        entry: Json = {"name": var.name}
        if var.value_from is not None:
            entry["valueFrom"] = var.value_from
        else:
            entry["value"] = var.value or ""
        env.append(entry)
    return env


def _kubelet_check(readiness: Readiness) -> Json | None:
    """A tcp, http or exec readiness as a kubelet probe's handler (notify and fd have none)."""
    if readiness.tcp is not None:
        return {"tcpSocket": {"port": readiness.tcp.port}}
    if readiness.http is not None:
        return {"httpGet": {"port": readiness.http.port, "path": readiness.http.path}}
    if readiness.exec_ is not None:
        return {"exec": {"command": list(readiness.exec_.command)}}
    return None


def kubelet_probes(readiness: Readiness | None, start_timeout: float) -> Json:
    """Belt and braces: the entry checks readiness and the watchdog itself (so the process
    kubelet of the tests, which probes nothing but exec, sees the same behaviour); a real
    kubelet checks too. Each probe gives a little more time than the entry does, so the
    entry's verdict, which says why, comes first."""
    handler = _kubelet_check(readiness) if readiness is not None else None
    if handler is None:
        return {}
    assert readiness is not None
    probes: Json = {
        "startupProbe": {
            **handler,
            "periodSeconds": 1,
            "failureThreshold": max(1, math.ceil(start_timeout)) + 1,
        }
    }
    if readiness.watchdog is not None:
        period = max(1, math.ceil(readiness.watchdog.interval))
        probes["livenessProbe"] = {
            **handler,
            "periodSeconds": period,
            "timeoutSeconds": period,
            "failureThreshold": 3,
        }
    return probes


def _container(
    actor: ActorTemplate, env: list[Json], settings: Settings, start_timeout: float
) -> Json:
    container: Json = {
        "name": CONTAINER,
        "image": actor.image or settings.image,
        "command": runtime_command(actor, settings.exit_record),
        "env": env,
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "File",
        "securityContext": _container_security_context(),
        "volumeMounts": [
            {"name": "tmp", "mountPath": SCRATCH},
            {"name": "nats-token", "mountPath": TOKEN_DIR, "readOnly": True},
        ],
    }
    if actor.module or uses_entry(actor):
        container["readinessProbe"] = READINESS_PROBE
    if uses_entry(actor):
        container |= kubelet_probes(actor.readiness, start_timeout)
    if actor.resources:
        container["resources"] = actor.resources
    if actor.working_dir:
        container["workingDir"] = actor.working_dir
    return container
