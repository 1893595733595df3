"""Cutting one server of a loopback NATS cluster off from everyone: iptables rules in a
chain of the soak's own, reached from OUTPUT for loopback only, and removed again by
:meth:`Partition.heal` (also when the soak fails: the caller heals in ``finally``).

On loopback every packet leaves through OUTPUT, so dropping there cuts both directions of
a connection. What is dropped while server ``k`` is cut off:

* every packet to or from its client port and its route port: its clients and the routes
  the other servers opened to it;
* every packet of the route connections it opened itself (their local ports, read from
  ``ss`` as the partition starts);
* every new connection to any route port (SYN): only ``k`` dials routes while the others
  are connected to each other, so this keeps it from dialling its way back in.

Only the ports of this cluster are touched; nothing else on the machine is.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from tests.natscluster import NatsCluster

_PEER = re.compile(r"\S+:(\d+)\s+\S+:(\d+)\s+users:.*pid=(\d+),")


def unavailable() -> str | None:
    """Why partitions cannot be made here, or None."""
    if os.geteuid() != 0:
        return "iptables needs root"
    missing = [tool for tool in ("iptables", "ss") if shutil.which(tool) is None]
    return f"{', '.join(missing)} not found" if missing else None


class Partition:
    def __init__(self) -> None:
        self.chain = f"REBEAM_SOAK_{os.getpid()}"
        self.active = False

    def isolate(self, cluster: NatsCluster, k: int) -> None:
        assert not self.active, "one partition at a time"
        _iptables("-N", self.chain)
        self.active = True
        _iptables("-I", "OUTPUT", "-o", "lo", "-j", self.chain)
        own = [cluster.client_ports[k], cluster.route_ports[k], *_dialled(cluster, k)]
        for port in own:
            for side in ("--dport", "--sport"):
                _iptables("-A", self.chain, "-p", "tcp", side, str(port), "-j", "DROP")
        for port in cluster.route_ports:
            _iptables("-A", self.chain, "-p", "tcp", "--syn", "--dport", str(port), "-j", "DROP")

    def heal(self) -> None:
        if not self.active:
            return
        _iptables("-D", "OUTPUT", "-o", "lo", "-j", self.chain, check=False)
        _iptables("-F", self.chain, check=False)
        _iptables("-X", self.chain, check=False)
        self.active = False


def _dialled(cluster: NatsCluster, k: int) -> list[int]:
    """The local ports of the route connections server ``k`` opened to the others."""
    out = subprocess.run(
        ["ss", "-tnpH", "state", "established"], capture_output=True, text=True, check=True
    ).stdout
    pid = cluster.processes[k].pid
    ports = []
    for match in _PEER.finditer(out):
        local, peer, owner = (int(g) for g in match.groups())
        if owner == pid and peer in cluster.route_ports:
            ports.append(local)
    return ports


def _iptables(*args: str, check: bool = True) -> None:
    subprocess.run(["iptables", "-w", *args], capture_output=True, check=check)
