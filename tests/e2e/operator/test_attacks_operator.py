"""The attack suite on Kubernetes: every attack of tests/security/attacks.py, made with a real
actor pod's stolen NATS credential (its projected ServiceAccount token), is refused by the
server with an error that names it; and a person without RBAC rights is refused management
by name (docs/security.md, "Kubernetes identity").

The world is the local suite's (tests/security/harness.py), built on the test control plane:
two namespaces the operator runs, a Supervisor ``bank`` in each with the Bank actor (registered
as ``bank``), and in the first a compromised Teller whose pod hands its token and pid to the
thief (a file the test reads). The owners are the cluster's admin, as people connect: with
their Kubernetes token.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from infra.cluster import Cluster
from infra.e2enats import E2ENats
from infra.procs import wait_for
from operator_helpers import GROUP, VERSION, Lifecycle, Objects, Operator
from tests.security.attacks import ATTACKS
from tests.security.harness import Thief, World, steal

import rebeam

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SECURITY = Path(__file__).resolve().parents[2] / "security"  # attack_actors.py
REBEAM = str(Path(sys.executable).parent / "rebeam")

Json = dict[str, Any]


def bank(loot: Path | None) -> Json:
    """The suite's manifest (harness.manifest) as a Supervisor object; the actor pods import
    attack_actors from tests/security (the process kubelet runs them in this checkout)."""
    env = [{"name": "PYTHONPATH", "value": str(SECURITY)}]
    children: list[Json] = [
        {"name": "vault", "actor": {"module": "attack_actors:Bank", "register": "bank", "env": env}}
    ]
    if loot is not None:
        teller = {"module": "attack_actors:Teller", "args": {"loot": str(loot)}, "env": env}
        children.append({"name": "teller", "actor": teller})
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Supervisor",
        "metadata": {"name": "bank"},
        "spec": {"children": children},
    }


class Side:
    """One namespace of the world: its events (from NATS) and its owner's connection."""

    def __init__(self, namespace: str, events: Lifecycle) -> None:
        self.namespace = namespace
        self.events = events
        self.owner: Any = None


@pytest.fixture
def other_namespace(cluster: Cluster) -> Iterator[str]:
    name = cluster.create_namespace("atkb")
    yield name
    cluster.delete_namespace(name)


@pytest.fixture
def operator_of_both(
    cluster: Cluster,
    namespace: str,
    other_namespace: str,
    nats: E2ENats,
    operator_kubeconfig: Path,
    tmp_path: Path,
) -> Iterator[Operator]:
    process = Operator(operator_kubeconfig, namespace, nats, tmp_path)
    process.also_watch = (other_namespace,)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def world(
    cluster: Cluster,
    namespace: str,
    other_namespace: str,
    nats: E2ENats,
    operator_of_both: Operator,
    tmp_path: Path,
) -> AsyncIterator[World]:
    loot = tmp_path / "loot.json"
    sides = {"a": Side(namespace, Lifecycle(nats, namespace))}
    sides["b"] = Side(other_namespace, Lifecycle(nats, other_namespace))
    thief: Thief | None = None
    try:
        Objects(cluster, namespace).apply(bank(loot))
        Objects(cluster, other_namespace).apply(bank(None))
        for side in sides.values():
            side.events.wait("started vault", timeout=90)
        wait_for(loot.exists, timeout=90, what="the teller's loot")
        stolen = json.loads(loot.read_text())
        thief = await steal(nats.url, stolen)
        built = World(True, None, nats.url, sides["a"], sides["b"], thief, tmp_path)  # type: ignore[arg-type]
        for name, side in sides.items():
            side.owner = await rebeam.connect(nats.url, namespace=side.namespace)
            built.victims[name] = await side.owner.whereis("bank", cached=False)
        yield built
    finally:
        if thief is not None:
            await thief.nc.close()
        for side in sides.values():
            if side.owner is not None:
                await side.owner.close()
            side.events.close()


async def test_every_attack_is_refused_on_kubernetes(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert world.thief.pid.namespace == world.a.namespace
    results: dict[str, tuple[bool, str]] = {}
    for name, attack in ATTACKS.items():
        results[name] = await attack(world)
    with capsys.disabled():
        print("\nattack suite on Kubernetes (a stolen actor pod token):")
        for name, (succeeded, evidence) in results.items():
            print(f"  {'SUCCEEDED' if succeeded else 'refused  '}  {name}: {evidence[:110]}")
    wrong = {n: e for n, (ok, e) in results.items() if ok}
    assert not wrong, wrong
    # Refused, and the tree is whole: the bank still answers, as its first incarnation.
    answer = await world.a.owner.call("bank", "balance", timeout=5)
    assert answer["balance"] == 100
    assert world.a.events.lines().count("started vault") == 1
    assert not any(e["event"] == "exited" for e in world.a.events.poll())


def test_a_person_without_rbac_rights_is_refused_management_by_name(
    cluster: Cluster, namespace: str, nats: E2ENats, operator: Operator, objects: Objects
) -> None:
    """A token of a ServiceAccount with no Role connects (any Kubernetes identity may), and
    every management request is refused, naming the right it lacks; the same request with a
    Role that grants it is answered."""
    objects.apply(bank(None))
    objects.wait_status("bank", lambda s: s.get("ready") == "1/1", what="bank ready", timeout=90)
    core = cluster.kubectl
    core("create", "serviceaccount", "nobody", "-n", namespace)
    nobody = cluster.service_account_token(namespace, "nobody")

    def ask(token: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "REBEAM_CREDENTIALS": token}
        return subprocess.run(
            [REBEAM, *args, "--nats-url", nats.url, "--namespace", namespace],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )

    user = f"system:serviceaccount:{namespace}:nobody"
    refused = ask(nobody, "restart-child", "bank/vault")
    assert refused.returncode == 1
    assert f"user {user} may not patch supervisors/bank in namespace {namespace}" in (
        refused.stderr
    ), refused.stderr
    tree = ask(nobody, "tree", "--json")
    assert tree.returncode == 1
    assert f"user {user} may not get supervisors in namespace {namespace}" in tree.stderr
    # Nothing happened to the tree.
    status = objects.status("bank")
    assert [(c["name"], c.get("restarts", 0)) for c in status["children"]] == [("vault", 0)]

    # Given the rights, the same person is answered.
    core("create", "role", "keeper", "-n", namespace, "--verb=get,patch",
         "--resource=supervisors.rebeam.io")  # fmt: skip
    core("create", "rolebinding", "keeper", "-n", namespace, "--role=keeper",
         f"--serviceaccount={namespace}:nobody")  # fmt: skip
    shown = wait_for(
        lambda: (r := ask(nobody, "tree", "--json")).returncode == 0 and r,
        timeout=30,
        what="tree answered once the Role is bound",
    )
    assert json.loads(shown.stdout)[0]["path"] == "bank"
