"""Telling a dead mailbox from one whose subscription has not reached our server yet.

A request to a subject nobody subscribes to is answered at once with status 503 (no
responders): that is ``noproc``, as immediate as OTP's. On a single nats-server it is exact,
because a SUB is registered before the subscriber's next message is read. In a cluster it is
not: a subscription reaches the other servers asynchronously, and a request from a client on
another server right after the callee subscribed gets 503 anyway (29 of 200 requests on a
three-server cluster on loopback; docs/nats.md, "Subscription interest"). The Helm chart
runs a three-server cluster, and a restarted actor is called the moment it is ready: without
this, every restart could hand its callers a false ``noproc``.

The lease tells the two apart (a runtime takes it before it subscribes its mailbox, and
drops it when it stops receiving). So, only when the server we are connected to is part of a
cluster, a 503 for a pid that holds a live lease is retried after a short pause, with the
back-off JetStream clients use for the same race (NATS ADR-22), shortened: at most four retries,
375 ms in all, never past the caller's deadline. Everything else is ``noproc`` at once.
"""

from __future__ import annotations

from typing import Any

import nats.errors

from rebeam._lease import lease_alive, open_leases
from rebeam.pids import Pid

__all__ = ["InterestProbe"]

PAUSES = (0.025, 0.05, 0.1, 0.2)


def clustered(nc: Any) -> bool:
    """Whether the server this connection uses is one of a cluster (its INFO names one)."""
    info = getattr(nc, "_server_info", None) or {}
    return bool(info.get("cluster"))


class InterestProbe:
    """Decides, for one node, whether a no-responders answer is worth another try."""

    def __init__(self, nc: Any, namespace: str, stats: Any) -> None:
        self.nc = nc
        self.namespace = namespace
        self.stats = stats  # the node's: ``interest_retries`` counts the retries allowed
        self._leases: Any = None

    async def pause_before_retry(
        self, pid: Pid, attempt: int, time_left: float | None
    ) -> float | None:
        """The pause before try ``attempt + 1`` after a 503 for ``pid``, or None when the
        503 is final (``noproc``)."""
        if attempt >= len(PAUSES) or not clustered(self.nc):
            return None
        pause = PAUSES[attempt]
        if time_left is not None and time_left <= pause:
            return None
        try:
            if self._leases is None:
                self._leases = await open_leases(self.nc.jetstream(), self.namespace)
            alive = await lease_alive(self._leases, pid)
        except (nats.errors.Error, OSError):  # JetStream errors are nats.errors.Error too
            return None  # cannot tell: the 503 stands
        if not alive:
            return None
        self.stats.interest_retries += 1
        return pause
