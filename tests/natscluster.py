"""A three-server NATS cluster on loopback (as the Helm chart runs one), secured like every
server rebeam starts: the same accounts and auth callout on all three, one issuer (on the
first server) answering for every server's clients.

Forming it on a busy machine shared with other test runs:

* the client and monitoring ports are picked by each server itself (``-1``) and read from
  its ports file, so no other process can take them between the pick and the listen;
* the route ports must be known before any server starts (each server's configuration
  lists them all), so they are picked free beforehand, and another process can take one in
  between: the server that cannot listen on it exits at once. A server that exits while the
  cluster forms is seen at once (not after the deadline), and when its log says its port was
  taken, the whole cluster is started again on fresh ports;
* ready means: every server has a route to every other, and JetStream's meta group has
  elected a leader that every server knows, read from each server's monitoring port
  (/routez, /jsz). Past the deadline, the error names what each server was still missing.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats

from rebeam import _subjects
from rebeam._orphans import die_with_parent
from rebeam._subjects import global_bucket, leases_bucket, local_bucket
from rebeam.auth import serverconf
from rebeam.auth.grants import Grant, Role
from rebeam.auth.issuer import Issuer, IssuerSecrets
from rebeam.backends import provision
from rebeam.natsd import find_nats_server, issuer_secrets_json
from rebeam.pids import Pid

FORM_DEADLINE = 60.0
ATTEMPTS = 3  # starts of the whole cluster, when a route port was taken under it
_EXPECT_LAST = "Nats-Expected-Last-Subject-Sequence"
_NO_SUCH_SEQ = str(2**62)  # a subject's last sequence no probe will ever match


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PortTaken(RuntimeError):
    """A server could not listen on a port picked for it: another process took it."""


class NatsCluster:
    def __init__(
        self, workdir: Path, namespace: str, size: int = 3, pick_port: Callable[[], int] = free_port
    ) -> None:
        self.workdir = workdir
        self.namespace = namespace
        self.size = size
        self.pick_port = pick_port
        self.secrets = IssuerSecrets.create()
        self.issuer: Issuer | None = None
        self.processes: list[subprocess.Popen[bytes]] = []
        self.client_ports: list[int] = []
        self.monitor_ports: list[int] = []
        self.route_ports: list[int] = []
        self.attempt = 0

    def start(self, deadline: float = FORM_DEADLINE) -> None:
        """Start the servers and wait until the cluster has formed."""
        for self.attempt in range(1, ATTEMPTS + 1):
            self._launch([self.pick_port() for _ in range(self.size)])
            try:
                self._wait_formed(time.monotonic() + deadline)
                return
            except PortTaken:
                self._stop_servers()
                if self.attempt == ATTEMPTS:
                    raise

    def _launch(self, route_ports: list[int]) -> None:
        self.route_ports = route_ports
        self.processes, self.client_ports, self.monitor_ports = [], [], []
        for i in range(self.size):
            (self.workdir / f"a{self.attempt}" / f"p{i}").mkdir(parents=True)
            self.processes.append(self._server(i, client=-1, monitor=-1))

    def _server(self, i: int, *, client: int, monitor: int) -> subprocess.Popen[bytes]:
        """Server ``i`` on these ports (-1: it picks), with its routes and its store."""
        base = self.workdir / f"a{self.attempt}"
        routes = ", ".join(f'"nats://127.0.0.1:{port}"' for port in self.route_ports)
        config = serverconf.render(
            port=client,
            ports_dir=base / f"p{i}",
            store_dir=base / f"s{i}",
            namespaces=(self.namespace,),
            issuer_secrets=self.secrets,
        ) + "\n".join([
            f'http: "127.0.0.1:{monitor}"',
            f'server_name: "s{i}"',
            "cluster {",
            '  name: "rebeam-test"',
            f'  listen: "127.0.0.1:{self.route_ports[i]}"',
            f"  routes: [{routes}]",
            "}",
            "",
        ])  # fmt: skip
        (base / f"s{i}.conf").write_text(config)
        with open(base / f"s{i}.log", "ab") as log:
            return subprocess.Popen(
                [find_nats_server(), "-c", str(base / f"s{i}.conf")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )

    def kill(self, i: int) -> int:
        """SIGKILL server ``i``, as a machine or pod is lost; its pid."""
        proc = self.processes[i]
        proc.kill()
        proc.wait()
        return proc.pid

    def restart(self, i: int) -> None:
        """Server ``i`` again, on the ports it had and with its store (what it kept on
        disk survives; its memory streams do not)."""
        assert self.processes[i].poll() is not None, f"s{i} is still running"
        self.processes[i] = self._server(
            i, client=self.client_ports[i], monitor=self.monitor_ports[i]
        )

    def issuer_file(self, path: Path) -> Path:
        """The issuer's secrets as ``rebeam run --issuer`` reads them (mode 0600)."""
        path.write_text(issuer_secrets_json(self.secrets))
        path.chmod(0o600)
        return path

    def _log(self, i: int) -> str:
        path = self.workdir / f"a{self.attempt}" / f"s{i}.log"
        return path.read_text(errors="replace")[-2000:]

    def _wait_formed(self, deadline: float) -> None:
        while True:
            for i, proc in enumerate(self.processes):
                if proc.poll() is not None:
                    log = self._log(i)
                    kind = PortTaken if "address already in use" in log else RuntimeError
                    raise kind(
                        f"nats-server s{i} exited ({proc.returncode}) as the cluster formed:\n{log}"
                    )
            missing = self._missing()
            if not missing:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the NATS cluster did not form: " + "; ".join(missing))
            time.sleep(0.1)

    def _missing(self) -> list[str]:
        """What each server still lacks, in words; empty once the cluster has formed."""
        self._read_ports()
        missing = []
        if len(self.monitor_ports) < self.size:
            return [f"s{i}: no ports file yet" for i in range(len(self.monitor_ports), self.size)]
        for i, port in enumerate(self.monitor_ports):
            try:
                routes = _get(port, "routez")
                meta = _get(port, "jsz").get("meta_cluster") or {}
            except (OSError, ValueError) as exc:
                missing.append(f"s{i}: monitoring port {port} did not answer ({exc})")
                continue
            peers = {r.get("remote_name") for r in routes.get("routes") or []} - {None}
            if len(peers) < self.size - 1:
                missing.append(f"s{i}: routes to {sorted(peers)} only, of {self.size - 1} others")
            if not meta.get("leader"):
                missing.append(f"s{i}: no JetStream meta leader yet")
        return missing

    def _read_ports(self) -> None:
        if len(self.monitor_ports) == self.size:
            return
        clients, monitors = [], []
        for i, proc in enumerate(self.processes):
            folder = self.workdir / f"a{self.attempt}" / f"p{i}"
            try:
                ports = json.loads((folder / f"nats-server_{proc.pid}.ports").read_text())
            except (OSError, ValueError):  # not written yet, or half written
                return
            clients.append(int(ports["nats"][0].rsplit(":", 1)[1]))
            monitors.append(int(ports["monitoring"][0].rsplit(":", 1)[1]))
        self.client_ports, self.monitor_ports = clients, monitors

    def url(self, i: int) -> str:
        return f"nats://127.0.0.1:{self.client_ports[i]}"

    def credentials(self, role: Role, pid: Pid | None = None) -> str:
        assert self.issuer is not None
        return self.issuer.issue(Grant(role, self.namespace, pid))

    async def set_up(self) -> None:
        """Start the issuer, and provision the namespace as its backend would."""
        self.issuer = Issuer(self.url(0), self.secrets)
        self.issuer.start()
        nc = await nats.connect(self.url(0), token=self.credentials(Role.BACKEND))
        try:
            await provision(nc, self.namespace)
        finally:
            await nc.close()
        await self._wait_streams_reachable(time.monotonic() + FORM_DEADLINE)

    async def _wait_streams_reachable(self, deadline: float) -> None:
        """Until a client of every server reaches every one of the namespace's streams. Each
        stream lives on one server, and the interest in its subjects reaches the others
        asynchronously, like any subscription's: before it does, a publish from a client
        of another server gets "no responders" (the first lease, say; docs/nats.md,
        "Subscription interest").

        Asked of the streams themselves, not of the monitoring port: on a server that hosts
        none of the account's streams, ``/subsz?acc=`` counts none of the interest that came
        over its routes, though its clients' publishes reach the streams (nats-server 2.15).
        Which server hosts what is the server's placement, so such a check failed whenever
        one server was left without a stream (every time the lease bucket was file-backed,
        as the registry and the mailboxes are)."""
        subjects = [
            _subjects.kv(bucket(self.namespace), "probe")
            for bucket in (global_bucket, local_bucket, leases_bucket)
        ]
        probe = Pid.for_incarnation(self.namespace, "probe", 1)
        subjects.append(_subjects.durable_queue(probe, probe))
        clients: dict[int, Any] = {}
        try:
            while True:
                missing = []
                for i in range(self.size):
                    if i not in clients:
                        try:
                            clients[i] = await _client(self.url(i), self.credentials(Role.BACKEND))
                        except (nats.errors.Error, OSError) as exc:
                            # Every server sends its clients to the issuer, a client of
                            # s0: until that interest has reached it too, it refuses them.
                            missing.append(f"s{i} lets no client in yet ({exc})")
                            continue
                    missing += [
                        f"s{i} does not reach the stream of {subject}"
                        for subject in subjects
                        if not await _reaches(clients[i], subject)
                    ]
                if not missing:
                    return
                if time.monotonic() > deadline:
                    why = "; ".join(missing)
                    raise TimeoutError(f"the namespace's streams are not reachable: {why}")
                await asyncio.sleep(0.05)
        finally:
            for nc in clients.values():
                await nc.close()

    def _stop_servers(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self) -> None:
        if self.issuer is not None:
            self.issuer.stop()
        self._stop_servers()


async def _client(url: str, token: str) -> Any:
    """One attempt to connect, quietly: a refusal is retried by the caller."""

    async def quiet(_: Exception) -> None:
        pass

    return await nats.connect(
        url, token=token, allow_reconnect=False, max_reconnect_attempts=0, error_cb=quiet
    )


async def _reaches(nc: Any, subject: str) -> bool:
    """Whether a publish on ``subject`` from ``nc`` reaches a stream. The publish expects a
    last sequence that no subject has, so the stream refuses it and stores nothing; its
    refusal is the answer. "No responders": this client's server does not know the stream
    yet."""
    try:
        reply = await nc.request(subject, b"", timeout=2, headers={_EXPECT_LAST: _NO_SUCH_SEQ})
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
        return False
    answer = json.loads(reply.data)
    assert "error" in answer, f"a probe of {subject} was stored: {answer}"
    return True


def _get(port: int, endpoint: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/{endpoint}", timeout=2) as r:
        answer = json.load(r)
    if not isinstance(answer, dict):
        raise ValueError(f"/{endpoint} answered no JSON object")
    return answer
