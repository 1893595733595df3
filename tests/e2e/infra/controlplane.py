"""etcd + kube-apiserver + kube-controller-manager as local processes, on random loopback ports.

kube-controller-manager runs because a real cluster has it and our operator relies on what it
does: the garbage collector deletes pods owned (ownerReferences) by a deleted Actor, the
namespace controller finishes namespace deletion, the serviceaccount controller creates each
namespace's ``default`` ServiceAccount (the ServiceAccount admission plugin stays on), the node
lifecycle controller taints a node that stops heartbeating. There is no scheduler: the process
kubelet binds pods itself.

Authentication: a static token for the admin (group ``system:masters``), ServiceAccount tokens
(signed with a generated key, minted through TokenRequest). Authorization: RBAC only.
"""

from __future__ import annotations

import secrets
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .binaries import find_binary
from .pki import Pki, make_pki
from .procs import ManagedProcess, WaitTimeout

__all__ = ["ControlPlane", "free_port", "write_kubeconfig"]

HOST = "127.0.0.1"
SERVICE_CIDR = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
NODE_MONITOR_GRACE_SECONDS = 15


def free_port() -> int:
    """A port free right now on the loopback interface (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def write_kubeconfig(path: Path, *, server: str, ca_cert: Path, token: str, user: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "e2e", "cluster": {"server": server, "certificate-authority": str(ca_cert)}}
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": user}}],
        "current-context": "e2e",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@dataclass
class ControlPlane:
    """A running control plane; :meth:`start` it, :meth:`stop` it (every process by its pid)."""

    workdir: Path
    pki: Pki
    server: str
    admin_token: str
    kubeconfig: Path
    processes: list[ManagedProcess] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        timeout: float = 90.0,
        before_controllers: Callable[[ControlPlane], None] | None = None,
    ) -> ControlPlane:
        """Start it all; ``before_controllers`` runs once the API server is ready and before
        kube-controller-manager starts (CRDs installed then are known to the garbage collector
        from its first discovery, instead of after its 30 s rediscovery)."""
        workdir.mkdir(parents=True, exist_ok=True)
        apiserver_port = free_port()
        server = f"https://{HOST}:{apiserver_port}"
        pki = make_pki(
            workdir / "pki",
            hosts=[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            ips=[HOST, "10.0.0.1"],
        )
        admin_token = secrets.token_urlsafe(32)
        tokens = workdir / "tokens.csv"
        tokens.write_text(f'{admin_token},rebeam-e2e-admin,rebeam-e2e-admin,"system:masters"\n')
        tokens.chmod(0o600)
        kubeconfig = write_kubeconfig(
            workdir / "admin.kubeconfig",
            server=server,
            ca_cert=pki.ca_cert,
            token=admin_token,
            user="rebeam-e2e-admin",
        )
        plane = cls(workdir, pki, server, admin_token, kubeconfig)
        try:
            etcd_url = plane._start_etcd(timeout)
            plane._start_apiserver(etcd_url, apiserver_port, tokens, timeout)
            if before_controllers is not None:
                before_controllers(plane)
            plane._start_controller_manager()
        except BaseException:
            plane.stop()
            raise
        return plane

    def _spawn(self, name: str, args: list[str]) -> ManagedProcess:
        process = ManagedProcess(name, args, log_path=self.workdir / f"{name}.log")
        self.processes.append(process)
        return process

    def _start_etcd(self, timeout: float) -> str:
        client, peer = f"http://{HOST}:{free_port()}", f"http://{HOST}:{free_port()}"
        etcd = self._spawn(
            "etcd",
            [
                str(find_binary("etcd")),
                "--name=e2e",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=e2e={peer}",
                "--unsafe-no-fsync",  # a throw-away store: durability buys nothing here
                "--log-level=warn",
            ],
        )
        self._wait_http(etcd, f"{client}/health", timeout=timeout, expect=b'"health":"true"')
        return client

    def _start_apiserver(self, etcd_url: str, port: int, tokens: Path, timeout: float) -> None:
        pki = self.pki
        apiserver = self._spawn(
            "kube-apiserver",
            [
                str(find_binary("kube-apiserver")),
                f"--etcd-servers={etcd_url}",
                f"--bind-address={HOST}",
                f"--advertise-address={HOST}",
                # The endpoint reconciler refuses a loopback advertise address; nothing here
                # routes the `kubernetes` Service anyway (no kube-proxy), so it has no endpoints.
                "--endpoint-reconciler-type=none",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'pki'}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                # Logs (kubectl logs): the API server calls a node's kubelet at its InternalIP
                # (the test nodes' hostnames resolve nowhere), as this CA's client, and checks
                # the kubelet's serving certificate with the same CA.
                "--kubelet-preferred-address-types=InternalIP",
                f"--kubelet-client-certificate={pki.kubelet_client_cert}",
                f"--kubelet-client-key={pki.kubelet_client_key}",
                f"--kubelet-certificate-authority={pki.ca_cert}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=RBAC",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki.service_account_pub}",
                f"--service-account-signing-key-file={pki.service_account_key}",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=1",
            ],
        )
        self._wait_http(apiserver, f"{self.server}/readyz", timeout=timeout, expect=b"ok")

    def _start_controller_manager(self) -> None:
        pki = self.pki
        self._spawn(
            "kube-controller-manager",
            [
                str(find_binary("kube-controller-manager")),
                f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                f"--bind-address={HOST}",
                f"--secure-port={free_port()}",
                f"--service-account-private-key-file={pki.service_account_key}",
                f"--root-ca-file={pki.ca_cert}",
                f"--cluster-signing-cert-file={pki.ca_cert}",
                f"--cluster-signing-key-file={pki.ca_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--controllers=*",
                # Node loss is noticed after 15 s without a heartbeat (default 50 s); the process
                # kubelet renews its Lease every 3 s.
                f"--node-monitor-grace-period={NODE_MONITOR_GRACE_SECONDS}s",
                "--node-monitor-period=1s",
                "--profiling=false",
                "--v=1",
            ],
        )
        # Its readiness is visible through the API: the caller waits for the "default"
        # ServiceAccount (see Cluster.wait_ready), which only its serviceaccount controller makes.

    def _wait_http(
        self, process: ManagedProcess, url: str, *, timeout: float, expect: bytes
    ) -> None:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            process.check_running()
            request = urllib.request.Request(url, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=5, context=context) as response:
                    body = response.read()
                    if expect in body:
                        return
                    last = body.decode(errors="replace")[:500]
            except (OSError, urllib.error.URLError) as exc:
                last = str(exc)
            time.sleep(0.1)
        raise WaitTimeout(
            f"{process.name} not ready at {url} within {timeout:.0f}s ({last}); "
            f"last lines of {process.log_path}:\n{process.log_tail()}"
        )

    def check_running(self) -> None:
        for process in self.processes:
            process.check_running()

    def stop(self) -> None:
        """Stop every process by its pid, the last started first."""
        for process in reversed(self.processes):
            process.stop()
