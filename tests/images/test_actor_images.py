"""The actor and demo images run the pod the operator makes (rebeam_operator.pods): its
command, env, security contexts, read-only root with an emptyDir at /tmp, and its NATS
credential as a mounted file. The greeter in it answers a call over a secured nats-server;
SIGTERM stops it with an exit record in its termination log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nats
import pytest
from tools.images import REPO, Engine

import rebeam
from rebeam.auth.grants import Grant, Role
from rebeam.backends import claim_slot
from rebeam.events import read_exit_record
from rebeam.exits import ExitKind
from rebeam.natsd import NatsServer
from rebeam.pids import Pid
from rebeam_operator.hosts import host_from_body
from rebeam_operator.pods import READINESS_PROBE, RUN_AS, pod_manifest
from rebeam_operator.settings import Settings
from tests.images.containers import (
    Container,
    ContainerFailed,
    pod_run_args,
    readable_by_container,
    run_once,
)
from tests.operator.bodies import supervisor_body

Json = dict[str, Any]
DEMO_CODE = REPO / "examples" / "demo" / "hello"


def actor_pod(namespace: str, module: str, url: str, register: str | None) -> tuple[Json, Pid]:
    """The pod the operator makes for incarnation 1 of a child running ``module``."""
    actor: Json = {"module": module}
    if register:
        actor["register"] = register
    body = supervisor_body({"children": [{"name": "c", "actor": actor}]}, namespace=namespace)
    host = host_from_body(body)
    pid = Pid.for_incarnation(namespace, f"slot-{namespace}", 1)
    settings = Settings(nats_url=url)
    pod = pod_manifest(host, host.spec.children[0], 1, pid, 5.0, {}, settings, decided_seq=1)
    return pod, pid


async def start_actor(
    images: Engine,
    image: str,
    server: NatsServer,
    namespace: str,
    tmp_path: Path,
    module: str,
    register: str | None = None,
) -> tuple[Container, Path]:
    """What a backend does before a pod runs (the slot, a credential for the pod's identity),
    then the pod's container; its termination log."""
    pod, pid = actor_pod(namespace, module, server.url, register)
    nc = await nats.connect(server.url, token=server.backend_credentials(namespace))
    try:
        await claim_slot(nc, pid)
    finally:
        await nc.close()
    token_dir = tmp_path / "nats-token"
    token_dir.mkdir()
    names = (register,) if register else ()
    grant = Grant(Role.ACTOR, namespace, pid, names=names)
    (token_dir / "nats-token").write_text(server.credentials(grant) or "")
    termination_log = tmp_path / "termination-log"
    termination_log.touch()
    readable_by_container(token_dir)
    readable_by_container(termination_log)
    (container,) = pod["spec"]["containers"]
    files = {"nats-token": token_dir, "termination-log": termination_log}
    args = pod_run_args(pod["spec"], container, files)
    if image == "actor":  # the user's code, as their image FROM the actor image would add it
        args.append(f"--volume={DEMO_CODE}:/app/hello:ro")
    running = Container.start(
        images, images.name(image), args, container["command"], tmp_path / "container.log"
    )
    return running, termination_log


# What the entry point runs under, seen from inside the running container.
CONFINEMENT = """
echo "uid $(id -u)"
grep -E '^(CapEff|NoNewPrivs):' /proc/1/status | tr -d :
for dir in / /tmp /var/tmp /run; do
    if touch "$dir/.probe" 2>/dev/null; then echo "$dir writable"; else echo "$dir read-only"; fi
done
"""


def confinement(container: Container) -> dict[str, str]:
    result = container.exec(["sh", "-c", CONFINEMENT])
    assert result.returncode == 0, result.stderr
    pairs = dict(line.split(None, 1) for line in result.stdout.splitlines())
    pairs["root"] = pairs.pop("/")
    return pairs


@pytest.mark.nats
@pytest.mark.parametrize("image", ["actor", "demo"])
async def test_the_greeter_answers_from_the_image(
    images: Engine, image: str, nats_server: NatsServer, namespace: str, tmp_path: Path
) -> None:
    container, termination_log = await start_actor(
        images, image, nats_server, namespace, tmp_path, "hello.greeter:Greeter", "greeter"
    )
    try:
        container.wait_ready(READINESS_PROBE["exec"]["command"])
        assert confinement(container) == {
            "uid": str(RUN_AS),
            "CapEff": "0000000000000000",
            "NoNewPrivs": "1",
            "root": "read-only",
            "/tmp": "writable",
            "/var/tmp": "read-only",  # only the pod's emptyDir is writable, as in Kubernetes
            "/run": "read-only",
        }
        async with rebeam.connect(nats_server.url, namespace=namespace):
            reply = await rebeam.call("greeter", {"hello": "image"}, timeout=10)
        assert reply.startswith("Hello, image! (greeting #1 from "), reply
        assert container.stop() == 0, container.output()
    finally:
        container.remove()
    reason = read_exit_record(termination_log)
    assert reason is not None, f"no exit record; output:\n{container.output()}"
    assert reason.kind == ExitKind.SHUTDOWN, reason


@pytest.mark.nats
async def test_an_actor_that_cannot_start_fails_with_its_reason(
    images: Engine, nats_server: NatsServer, namespace: str, tmp_path: Path
) -> None:
    """A module missing from the image: the container ends, the test hears why at once."""
    container, termination_log = await start_actor(
        images, "actor", nats_server, namespace, tmp_path, "nosuch.module:Actor"
    )
    try:
        with pytest.raises(ContainerFailed, match="ended with exit code") as failed:
            container.wait_ready(READINESS_PROBE["exec"]["command"])
    finally:
        container.remove()
    assert "nosuch" in str(failed.value)
    reason = read_exit_record(termination_log)
    assert reason is not None, container.output()
    assert "nosuch" in str(reason), reason


@pytest.mark.parametrize("image", ["operator", "actor", "demo"])
def test_the_image_user_is_not_root_and_owns_its_home(images: Engine, image: str) -> None:
    """Without the pod's runAsUser (a kubelet without it, a laptop): the image's own user."""
    result = run_once(
        images,
        images.name(image),
        [],
        ["sh", "-c", 'id -u; id -g; touch "$HOME/.probe" && echo "home $HOME writable"'],
    )
    assert result.returncode == 0, result.stderr
    uid, gid, home = result.stdout.splitlines()
    assert (uid, gid) == (str(RUN_AS), str(RUN_AS))
    assert home == "home /home/rebeam writable"
