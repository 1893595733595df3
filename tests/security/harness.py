"""The attack suite's world: real ``rebeam run`` processes on one real nats-server, an owner
per namespace, and a thief holding a credential stolen from a compromised actor.

Two namespaces share the server (``rebeam run --nats URL --issuer FILE`` each), so that
reaching across namespaces can be tried. With ``secure=False`` the same world runs on an open
server (the runs get no credentials at all): every attack must then succeed, which shows the
suite can tell a refusal from an attack that was never tried.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats

import rebeam
from rebeam import _subjects
from rebeam.natsd import NatsServer, ServerOptions
from rebeam.pids import Pid
from tests.local.conftest import REBEAM, EventLog, wait_until

HERE = Path(__file__).parent
DEADLINE = 10.0


def manifest(teller_loot: Path | None) -> str:
    children = ["    - {name: vault, actor: {module: 'attack_actors:Bank', register: bank}}"]
    if teller_loot is not None:
        children.append(
            "    - {name: teller, actor: {module: 'attack_actors:Teller', "
            f"args: {{loot: '{teller_loot}'}}}}}}"
        )
    return "\n".join(
        [
            "apiVersion: rebeam.io/v1alpha1",
            "kind: Supervisor",
            "metadata: {name: bank}",
            "spec:",
            "  children:",
            *children,
            "",
        ]
    )


@dataclass
class Side:
    """One namespace: its `rebeam run`, its events and its owner's connection."""

    namespace: str
    process: subprocess.Popen[str]
    events: EventLog
    state: Path
    owner: Any = None

    def instance_files(self) -> list[Path]:
        return list((self.state / "rebeam" / "runs").glob(f"{self.namespace}.*.json"))

    def ready(self) -> bool:
        """Whether its instance file is written."""
        return bool(self.instance_files())

    def owner_credentials(self) -> str | None:
        (instance,) = self.instance_files()
        info = json.loads(instance.read_text())
        return info.get("credentials")


@dataclass
class Thief:
    """A raw NATS connection with a stolen actor credential, and every error it was told."""

    pid: Pid
    nc: Any
    errors: list[str] = field(default_factory=list)

    def refused(self, subject: str) -> str | None:
        """The permissions violation the server reported for ``subject``, if any."""
        for error in self.errors:
            if "permissions violation" in error and subject.lower() in error.lower():
                return error
        return None


@dataclass
class World:
    secure: bool
    server: NatsServer
    url: str
    a: Side
    b: Side
    thief: Thief
    tmp: Path
    victims: dict[str, Pid] = field(default_factory=dict)  # the banks, looked up first

    async def outcome(
        self, subject: str, effect: Callable[[], Awaitable[bool]], timeout: float = DEADLINE
    ) -> tuple[bool, str]:
        """Wait until the attack visibly worked (``effect``) or the server refused it (a
        permissions violation on ``subject`` reached the thief): ``(succeeded, evidence)``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            refusal = self.thief.refused(subject)
            if refusal:
                return False, refusal
            if await effect():
                return True, "the attack took effect"
            await asyncio.sleep(0.05)
        raise AssertionError(f"neither refused nor effective within {timeout}s: {subject}")


async def steal(url: str, stolen: dict[str, Any]) -> Thief:
    """A raw NATS connection with the teller's stolen credential, speaking as the teller's
    pid (what its grant requires), its errors collected."""
    pid = Pid.parse(stolen["pid"])
    errors: list[str] = []

    async def collect(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(
        url,
        token=stolen["token"],
        name=str(pid),
        inbox_prefix=f"{_subjects.inbox_prefix(pid)}.stolen",
        error_cb=collect,
        max_reconnect_attempts=0,
    )
    return Thief(pid, nc, errors)


def start_side(tmp: Path, url: str, namespace: str, issuer: Path | None, loot: Path | None) -> Side:
    folder = tmp / namespace
    folder.mkdir()
    shutil.copy(HERE / "attack_actors.py", folder / "attack_actors.py")
    (folder / "app.yaml").write_text(manifest(loot))
    events = EventLog(folder / "events.jsonl")
    state = folder / "state"
    argv = [REBEAM, "run", str(folder / "app.yaml"), "--plain", "--namespace", namespace]
    argv += ["--nats", url, "--events", str(events.path)]
    if issuer is not None:
        argv += ["--issuer", str(issuer)]
    env = {**dict(__import__("os").environ), "XDG_STATE_HOME": str(state)}
    env.pop("REBEAM_CREDENTIALS", None)
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=folder
    )
    return Side(namespace, process, events, state)


async def build(tmp: Path, secure: bool) -> World:
    server = NatsServer.start(
        tmp / "nats", ServerOptions(namespaces=("atka", "atkb"), secure=secure, monitoring=True)
    )
    issuer = tmp / "nats" / "issuer.json" if secure else None
    loot = tmp / "loot.json"
    a = start_side(tmp, server.url, "atka", issuer, loot)
    b = start_side(tmp, server.url, "atkb", issuer, None)
    for side in (a, b):
        side.events.wait("started", "vault")
        wait_until(side.ready)
        side.owner = await rebeam.connect(
            server.url, namespace=side.namespace, credentials=side.owner_credentials()
        )
    wait_until(loot.exists, what="the teller's loot")
    thief = await steal(server.url, json.loads(loot.read_text()))
    world = World(secure, server, server.url, a, b, thief, tmp)
    for name, side in (("a", a), ("b", b)):
        world.victims[name] = await side.owner.whereis("bank", cached=False)
    return world


async def tear_down(world: World) -> None:
    await world.thief.nc.close()
    for side in (world.a, world.b):
        if side.owner is not None:
            await side.owner.close()
        if side.process.poll() is None:
            side.process.terminate()
            try:
                side.process.wait(20)
            except subprocess.TimeoutExpired:
                side.process.kill()
                side.process.wait()
        for stream in (side.process.stdout, side.process.stderr):
            if stream is not None:
                stream.close()
    world.server.stop()
