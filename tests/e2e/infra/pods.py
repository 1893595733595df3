"""Pod manifests and status accessors shared by the e2e tests."""

from __future__ import annotations

import json
import textwrap
from typing import Any

Json = dict[str, Any]

TERMINATION_LOG = "/dev/termination-log"
READY_CHECK = "import os, sys; sys.exit(not os.path.exists(os.path.expanduser('~/ready')))"
MARK_READY = "open(__import__('os').path.expanduser('~/ready'), 'w').close()"


def python_pod(
    name: str,
    code: str,
    *,
    image: str,
    restart_policy: str = "Never",
    grace_seconds: int | None = None,
    env: list[Json] | None = None,
    owner: Json | None = None,
    ready_file: bool = False,
) -> Json:
    """A pod of one container running ``python -c code``.

    ``REBEAM_TERMINATION_LOG`` names the termination-message file on any cluster: the process
    kubelet overrides it with a file of its own; a real kubelet reads ``terminationMessagePath``.
    """
    spec: Json = {
        "restartPolicy": restart_policy,
        "containers": [
            {
                "name": "main",
                "image": image,
                "command": ["python", "-c", textwrap.dedent(code)],
                "terminationMessagePath": TERMINATION_LOG,
                "env": [{"name": "REBEAM_TERMINATION_LOG", "value": TERMINATION_LOG}, *(env or [])],
            }
        ],
    }
    if ready_file:
        # Ready once the process has created ~/ready (HOME is private to the pod on any cluster).
        spec["containers"][0]["readinessProbe"] = {
            "exec": {"command": ["python", "-c", READY_CHECK]},
            "periodSeconds": 1,
            "failureThreshold": 1,
        }
    if grace_seconds is not None:
        spec["terminationGracePeriodSeconds"] = grace_seconds
    metadata: Json = {"name": name}
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def container_status(pod: Json, name: str = "main") -> Json:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        if status["name"] == name:
            return dict(status)
    return {}


def terminated(pod: Json, name: str = "main") -> Json:
    """The container's terminated state, or {} while it has none."""
    return dict(container_status(pod, name).get("state", {}).get("terminated") or {})


def ready(pod: Json) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def running(pod: Json, name: str = "main") -> bool:
    return bool(container_status(pod, name).get("state", {}).get("running"))


def phase(pod: Json) -> str:
    return str(pod.get("status", {}).get("phase", ""))


def pod_events(api: Any, namespace: str, pod: str) -> list[Json]:
    """The core/v1 Events on a pod (``api``: a kubernetes ApiClient), as plain dicts."""
    from kubernetes import client

    listing = client.CoreV1Api(api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={pod}", _preload_content=False
    )
    return list(json.loads(listing.data)["items"])


def events_named(events: list[Json], reason: str, message: str = "") -> list[Json]:
    """The events of ``reason`` whose message contains ``message``."""
    return [e for e in events if e["reason"] == reason and message in (e.get("message") or "")]
