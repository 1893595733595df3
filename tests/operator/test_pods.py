"""pods.py: the pod of one incarnation (env, labels, annotations, entry, owner, grace period,
security context)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from rebeam.pids import Pid
from rebeam.spec.models import ActorTemplate, Child
from rebeam.supervision import BRUTAL_KILL, INFINITY, Shutdown
from rebeam_operator.hosts import host_from_body
from rebeam_operator.pods import (
    INFINITE_GRACE,
    READINESS_PROBE,
    RUN_AS,
    SCRATCH,
    TOKEN_FILE,
    grace_seconds,
    pod_manifest,
    runtime_command,
)
from rebeam_operator.settings import Settings
from tests.operator.bodies import actor_body, supervisor_body

Json = dict[str, Any]

OWNER: Json = {"apiVersion": "rebeam.io/v1alpha1", "kind": "Actor", "name": "app-a", "uid": "u"}


@pytest.mark.parametrize(
    ("shutdown", "grace"),
    [
        (BRUTAL_KILL, 0),
        (INFINITY, INFINITE_GRACE),
        (5.0, 5),
        (10, 10),
        (0.5, 1),  # rounded up: a grace period is whole seconds
        (2.2, 3),
        (0.0, 1),  # 0 would be a force delete: SIGTERM must still come first
    ],
)
def test_grace_seconds(shutdown: Shutdown, grace: int) -> None:
    assert grace_seconds(shutdown) == grace


def build(child: Json, *, settings: Settings | None = None, **body: Any) -> Json:
    host = host_from_body(supervisor_body({"children": [child]}, **body))
    spec = host.spec.children[0]
    pid = Pid.for_incarnation("ns", "slot-uid", 3)
    return pod_manifest(host, spec, 3, pid, 5.0, OWNER, settings or Settings(), decided_seq=7)


def env_of(pod: Json) -> dict[str, Json]:
    return {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}


def test_identity_labels_and_annotations() -> None:
    pod = build({"name": "a", "actor": {"command": ["sleep", "1"]}})
    meta = pod["metadata"]
    assert meta["name"] == "app-a-3"
    assert meta["namespace"] == "ns"
    assert meta["labels"] == {
        "app.kubernetes.io/managed-by": "rebeam-operator",
        "rebeam.io/host-uid": "uid-app",
        "rebeam.io/supervisor": "app",
        "rebeam.io/child": "a",
        "rebeam.io/incarnation": "3",
    }
    assert meta["annotations"] == {
        "rebeam.io/path": "app",
        "rebeam.io/pid": "ns.slot-uid.3",
        "rebeam.io/decided-seq": "7",
    }
    assert meta["ownerReferences"] == [OWNER]
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["terminationGracePeriodSeconds"] == 5


def test_nested_path_is_the_annotation_and_env() -> None:
    pod = build(
        {"name": "a", "actor": {"command": ["true"]}},
        annotations={"rebeam.io/path": "root/mid"},
    )
    assert pod["metadata"]["annotations"]["rebeam.io/path"] == "root/mid"
    assert env_of(pod)["REBEAM_SUPERVISOR"]["value"] == "root/mid"


def test_long_supervisor_name_is_a_valid_label() -> None:
    name = "s" * 60 + "-x-" + "y" * 10
    pod = build({"name": "a", "actor": {"command": ["true"]}}, name=name)
    label = pod["metadata"]["labels"]["rebeam.io/supervisor"]
    assert len(label) <= 63
    assert label[-1].isalnum()


def test_env() -> None:
    settings = Settings(nats_url="nats://n:4222", exit_record="$(LOG)", lease_ttl=3.0)
    child = {
        "name": "a",
        "actor": {
            "module": "pkg.mod:Thing",
            "register": "thing",
            "mailbox": {"maxMessages": 10, "durable": True},
            "env": [
                {"name": "PLAIN", "value": "1"},
                {"name": "EMPTY"},
                {"name": "FROM", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            ],
        },
    }
    env = env_of(build(child, settings=settings))
    assert {k: v.get("value") for k, v in env.items() if k.startswith("REBEAM_")} == {
        "REBEAM_NATS_URL": "nats://n:4222",
        "REBEAM_NAMESPACE": "ns",
        "REBEAM_PID": "ns.slot-uid.3",
        "REBEAM_SUPERVISOR": "app",
        "REBEAM_CHILD": "a",
        "REBEAM_EXIT_RECORD": "$(LOG)",
        "REBEAM_CREDENTIALS_FILE": TOKEN_FILE,
        "REBEAM_NAME": "thing",
        "REBEAM_LEASE_TTL": "3.0",
        "REBEAM_MAILBOX_DURABLE": "true",
        "REBEAM_MAILBOX_MAX_MESSAGES": "10",
    }
    assert env["PYTHONDONTWRITEBYTECODE"] == {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}
    assert env["PLAIN"] == {"name": "PLAIN", "value": "1"}
    assert env["EMPTY"] == {"name": "EMPTY", "value": ""}
    assert env["FROM"] == {
        "name": "FROM",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
    }
    # The child's own env comes last: $(VAR) references to ours resolve.
    names = [e["name"] for e in build(child, settings=settings)["spec"]["containers"][0]["env"]]
    assert names[-3:] == ["PLAIN", "EMPTY", "FROM"]


def test_no_name_no_lease_ttl_no_mailbox() -> None:
    env = env_of(build({"name": "a", "actor": {"command": ["true"]}}))
    assert "REBEAM_NAME" not in env
    assert "REBEAM_LEASE_TTL" not in env
    assert not [k for k in env if k.startswith("REBEAM_MAILBOX_")]


def test_python_entry_reads_ready_line_through_a_probe() -> None:
    child = {"name": "a", "actor": {"module": "pkg.mod:Thing", "args": {"k": [1, "two"]}}}
    container = build(child)["spec"]["containers"][0]
    command = container["command"]
    assert command[:2] == ["sh", "-c"]
    assert "python -m rebeam.runtime" in command[2]
    assert "--ready-fd 3" in command[2]
    assert command[3:] == ["rebeam-runtime", "pkg.mod:Thing", "--args", '{"k": [1, "two"]}']
    assert json.loads(command[-1]) == {"k": [1, "two"]}
    assert container["readinessProbe"] == READINESS_PROBE
    assert container["name"] == "actor"
    assert container["terminationMessagePolicy"] == "File"


def test_command_entry_with_list_args_and_no_probe() -> None:
    child = {"name": "a", "actor": {"command": ["echo", "hi"], "args": ["there", 3]}}
    container = build(child)["spec"]["containers"][0]
    assert container["command"] == ["echo", "hi", "there", "3"]
    assert "readinessProbe" not in container


def test_command_with_mapping_args_ignores_them() -> None:
    spec = Child.model_validate({"name": "a", "actor": {"command": ["run"], "args": {"k": 1}}})
    assert spec.actor is not None
    assert runtime_command(spec.actor) == ["run"]


def test_image_resources_working_dir() -> None:
    child = {
        "name": "a",
        "actor": {
            "command": ["true"],
            "image": "example/img:1",
            "resources": {"limits": {"cpu": "1"}},
            "workingDir": "/srv",
        },
    }
    container = build(child)["spec"]["containers"][0]
    assert container["image"] == "example/img:1"
    assert container["resources"] == {"limits": {"cpu": "1"}}
    assert container["workingDir"] == "/srv"
    default = build({"name": "a", "actor": {"command": ["true"]}})["spec"]["containers"][0]
    assert default["image"] == Settings().image
    assert "resources" not in default
    assert "workingDir" not in default


@pytest.mark.parametrize(
    ("shutdown", "grace"), [(BRUTAL_KILL, 0), (INFINITY, INFINITE_GRACE), (7.0, 7)]
)
def test_pod_grace_is_the_childs_shutdown(shutdown: Shutdown, grace: int) -> None:
    host = host_from_body(supervisor_body())
    spec = host.spec.children[0]
    pid = Pid.for_incarnation("ns", "s", 1)
    pod = pod_manifest(host, spec, 1, pid, shutdown, OWNER, Settings(), decided_seq=1)
    assert pod["spec"]["terminationGracePeriodSeconds"] == grace


def test_standalone_actor_pod_is_named_after_the_actor() -> None:
    host = host_from_body(actor_body())
    spec = host.spec.children[0]
    pod = pod_manifest(
        host,
        spec,
        2,
        Pid.for_incarnation("ns", host.uid, 2),
        5.0,
        OWNER,
        Settings(),
        decided_seq=1,
    )
    assert pod["metadata"]["name"] == "solo-2"
    assert pod["metadata"]["labels"]["rebeam.io/child"] == "solo"


@pytest.mark.parametrize(
    "actor", [{"module": "pkg.mod:Thing"}, {"command": ["run"], "image": "example/any:1"}]
)
def test_every_pod_runs_hardened(actor: Json) -> None:
    """Whatever the child (a Python actor or any command in any image): a fixed non-root
    user, no privilege escalation, no capabilities, seccomp RuntimeDefault, a read-only root
    filesystem with an emptyDir at /tmp, and no token for the Kubernetes API: only a
    projected ServiceAccount token for the audience rebeam-nats (its NATS credential). This
    is what the Pod Security Standard "restricted" asks."""
    pod = build({"name": "a", "actor": actor})["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["volumeMounts"] == [
        {"name": "tmp", "mountPath": SCRATCH},
        {"name": "nats-token", "mountPath": "/var/run/secrets/rebeam", "readOnly": True},
    ]
    token = {"audience": "rebeam-nats", "expirationSeconds": 3600, "path": "nats-token"}
    assert pod["volumes"] == [
        {"name": "tmp", "emptyDir": {}},
        {"name": "nats-token", "projected": {"sources": [{"serviceAccountToken": token}]}},
    ]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["REBEAM_CREDENTIALS_FILE"] == TOKEN_FILE == "/var/run/secrets/rebeam/nats-token"


def test_manifests_share_no_mutable_parts() -> None:
    """The driver may add to one pod's body; another pod must not change with it."""
    first = build({"name": "a", "actor": {"command": ["true"]}})["spec"]
    first["securityContext"]["runAsUser"] = 0
    first["containers"][0]["securityContext"]["capabilities"]["drop"].clear()
    second = build({"name": "a", "actor": {"command": ["true"]}})["spec"]
    assert second["securityContext"]["runAsUser"] == RUN_AS
    assert second["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}


FAKE_PYTHON = """#!/bin/sh
# Stands in for `python -m rebeam.runtime ... --ready-fd 3`: says ready on descriptor 3 and
# reports the HOME it was given.
echo "$HOME" > "$REPORT"
echo "ready pid" >&3
"""


def _run_entry_and_probe(tmp_path: Path, home: Path) -> tuple[str, int]:
    """Run the module entry's shell script and then the readiness probe with ``home`` as HOME
    and a private directory as /tmp. Returns the HOME the runtime got and the probe's exit
    code."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    report = tmp_path / "report"
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(home),
        "REPORT": str(report),
    }

    def private_tmp(script: str) -> str:
        assert f"HOME={SCRATCH}" in script
        return script.replace(f"HOME={SCRATCH}", f"HOME={scratch}")

    command = runtime_command(ActorTemplate.model_validate({"module": "m:C"}))
    subprocess.run(
        ["sh", "-c", private_tmp(command[2]), *command[3:]], env=env, check=True, timeout=30
    )
    probe = READINESS_PROBE["exec"]["command"]
    assert probe[:2] == ["sh", "-c"]
    ready = subprocess.run(["sh", "-c", private_tmp(probe[2])], env=env, timeout=30, check=False)
    return report.read_text().strip(), ready.returncode


def test_ready_file_is_in_a_writable_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    runtime_home, probe = _run_entry_and_probe(tmp_path, home)
    assert runtime_home == str(home)
    assert probe == 0
    assert (home / ".rebeam-ready").read_text() == "ready pid\n"


def test_a_home_that_cannot_be_written_falls_back_to_tmp(tmp_path: Path) -> None:
    """On a read-only root filesystem the image's HOME cannot be written: the runtime gets
    /tmp (the emptyDir) as HOME, and the probe finds the ready line there."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    home = blocker / "home"  # under a regular file: nothing can be created there, even by root
    runtime_home, probe = _run_entry_and_probe(tmp_path, home)
    assert runtime_home == str(tmp_path / "scratch")
    assert probe == 0
    assert (tmp_path / "scratch" / ".rebeam-ready").read_text() == "ready pid\n"


def test_probe_is_not_ready_before_the_ready_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    probe = READINESS_PROBE["exec"]["command"]
    result = subprocess.run(
        probe, env={"PATH": os.environ["PATH"], "HOME": str(home)}, timeout=30, check=False
    )
    assert result.returncode != 0
