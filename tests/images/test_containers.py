"""containers.py's translation of a pod spec into podman flags: what it translates, and that
it refuses what it does not (so a new hardening cannot pass the image tests untranslated)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rebeam.pids import Pid
from rebeam_operator.hosts import host_from_body
from rebeam_operator.pods import pod_manifest
from rebeam_operator.settings import Settings
from tests.images.containers import expand, pod_run_args
from tests.operator.bodies import supervisor_body


def actor_pod() -> dict:
    host = host_from_body(supervisor_body())
    pid = Pid.for_incarnation("ns", "slot", 1)
    return pod_manifest(host, host.spec.children[0], 1, pid, 5.0, {}, Settings(), decided_seq=1)


def test_the_operators_pod_becomes_flags(tmp_path: Path) -> None:
    spec = actor_pod()["spec"]
    (container,) = spec["containers"]
    files = {"nats-token": tmp_path, "termination-log": tmp_path / "log"}
    args = pod_run_args(spec, container, files)
    for flag in (
        "--user=10001:10001",
        "--group-add=10001",
        "--security-opt=no-new-privileges",
        "--read-only",
        "--cap-drop=ALL",
        "--mount=type=tmpfs,destination=/tmp,tmpfs-mode=1777",
        f"--volume={tmp_path}:/var/run/secrets/rebeam:ro",
        f"--volume={tmp_path / 'log'}:/dev/termination-log",
        "--env=PYTHONDONTWRITEBYTECODE=1",
    ):
        assert flag in args, (flag, args)


@pytest.mark.parametrize(
    ("where", "field"),
    [("pod", {"sysctls": []}), ("container", {"procMount": "Default"})],
)
def test_an_untranslated_security_field_is_refused(where: str, field: dict) -> None:
    spec = actor_pod()["spec"]
    (container,) = spec["containers"]
    target = spec if where == "pod" else container
    target["securityContext"] = {**target["securityContext"], **field}
    with pytest.raises(ValueError, match="not translated"):
        pod_run_args(spec, container, {"nats-token": Path("/x")})


def test_env_is_expanded_as_the_kubelet_does() -> None:
    env = {"A": "1"}
    assert expand("$(A)/$(B)", env) == "1/$(B)"
    assert expand("$$(REBEAM_TERMINATION_LOG)", env) == "$(REBEAM_TERMINATION_LOG)"
