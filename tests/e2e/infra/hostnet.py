"""Chart values for a test cluster whose pods share this machine's network (the process
kubelet, and container mode's host network): ports a real cluster gives each pod are one
machine's here, and the test kubelet runs only ``exec`` probes."""

from __future__ import annotations

import socket
from typing import Any

__all__ = ["free_port", "share_host_network"]

Json = dict[str, Any]

# The operator's /readyz, asked from inside its container by an exec probe.
READYZ = "import urllib.request; urllib.request.urlopen('http://127.0.0.1:{}/readyz', timeout=5)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def share_host_network(operator: Json) -> Json:
    """Give ``operator`` (its values) a free metrics port and an exec readiness probe on it
    (so `helm install --wait` waits until the operator has reached NATS, as the chart's
    httpGet probe does on a real cluster); return the ``metrics`` values: no metrics port for
    actor pods, since several would want the same one."""
    port = free_port()
    operator["metricsPort"] = port
    readyz = {"command": ["python3", "-c", READYZ.format(port)]}
    operator["readinessProbe"] = {"httpGet": None, "exec": readyz}  # null: not the chart's
    return {"actorPort": None}
