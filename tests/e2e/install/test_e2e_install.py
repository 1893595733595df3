"""The user's path end to end: `helm install` the chart -> the operator runs from the chart's
own Deployment with its ServiceAccount's token -> `kubectl apply` the README's demo ->
the actors call each other, one crashes and is restarted -> `kubectl get` and
`kubectl describe` show it -> `kubectl delete` shuts the tree down in order ->
`helm uninstall` leaves nothing behind but the CRDs.

It runs twice on the local control plane: with every pod a process of this machine
(``processes``), and in container mode (``containers``: infra/containers.py), where the
operator Deployment runs from the operator image and every actor pod from the actor image
(the demo's, built FROM it), with the chart's default values but for the image names.

The NATS chart cannot be fetched here: the release uses the test nats-server
(nats.enabled=false, natsUrl) and the chart copy of tests/chart/chart_helpers.offline_chart.
On an existing cluster (REBEAM_E2E_KUBECONFIG), set REBEAM_E2E_OPERATOR_IMAGE to the operator
image and REBEAM_E2E_IMAGE to an actor image with the demo's code (images/demo.Dockerfile).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from infra.binaries import REPO
from infra.cluster import Cluster
from infra.e2enats import E2ENats
from infra.procs import wait_for
from install_helpers import EventTap, apply_nats_secrets, operator_log, release_values
from tests.chart.chart_helpers import offline_chart
from tests.images.containers import built_images
from tools.images import Engine

pytestmark = pytest.mark.e2e

RELEASE = "rbe2e"
DEPLOYMENT = f"{RELEASE}-rebeam-operator"  # <release>-<chart>-operator
DEMO = REPO / "examples" / "demo"
RESTRICTED = (
    "pod-security.kubernetes.io/enforce=restricted",
    "pod-security.kubernetes.io/enforce-version=latest",
)

Json = dict[str, Any]


@pytest.fixture
def app_namespace(cluster: Cluster) -> Iterator[str]:
    """Where the app goes; the release lives in ``namespace`` and watches only this one."""
    name = cluster.create_namespace("app")
    yield name
    cluster.delete_namespace(name)


@pytest.fixture(params=["processes", "containers"])
def images(
    request: pytest.FixtureRequest, cluster: Cluster, namespace: str, app_namespace: str
) -> Iterator[Engine | None]:
    """The kubelet mode: None for processes; in container mode, the engine holding our
    images, with a node in container mode running both namespaces' pods."""
    if request.param == "processes":
        yield None
        return
    if cluster.kubelet is None:
        pytest.skip("container mode is a mode of the local test kubelet")
    engine = built_images()
    with cluster.container_node(namespace, app_namespace):
        yield engine


def _demo_manifest(cluster: Cluster, image: str, images: Engine | None) -> Json:
    """examples/demo/app.yaml, kept running after the driver is done (autoShutdown never,
    so that `kubectl delete` has a live tree to shut down in order)."""
    manifest: Json = yaml.safe_load((DEMO / "app.yaml").read_text())
    spec = manifest["spec"]
    spec["autoShutdown"] = "never"
    for child in spec["children"]:
        child.pop("significant", None)
        if images is not None:  # the demo image: the actor image with the demo's code
            child["actor"]["image"] = images.name("demo")
        elif cluster.kubelet is not None:  # pods run in this repository's environment
            child["actor"]["env"] = [{"name": "PYTHONPATH", "value": str(DEMO)}]
        else:  # an image with the demo's code under /app (images/demo.Dockerfile)
            child["actor"]["image"] = image
    return manifest


def _get(cluster: Cluster, namespace: str, *what: str) -> Json:
    out = cluster.kubectl("get", *what, "-n", namespace, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def _logs(cluster: Cluster, namespace: str) -> str:
    """Every pod's log (`kubectl logs`), for failure messages."""
    out = []
    for pod in _get(cluster, namespace, "pods").get("items") or []:
        name = pod["metadata"]["name"]
        out.append(
            f"--- {name}\n" + cluster.kubectl("logs", "-n", namespace, name, check=False).stdout
        )
    return "\n".join(out)


def _an_absent_image_is_a_failed_start(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    """In container mode: an actor whose image is not there waits in ImagePullBackOff, as on
    a cluster, and the operator counts it a failed start once its startTimeout is over (here
    during init: the supervisor fails)."""
    manifest: Json = {
        "apiVersion": "rebeam.io/v1alpha1",
        "kind": "Supervisor",
        "metadata": {"name": "absent"},
        "spec": {
            "intensity": 0,
            "children": [
                {
                    "name": "w",
                    "startTimeout": "8s",
                    "actor": {
                        "module": "hello.greeter:Greeter",
                        "image": "localhost/rebeam-absent:dev",
                    },
                }
            ],
        },
    }
    path = tmp_path / "absent.yaml"
    path.write_text(yaml.safe_dump(manifest))
    cluster.kubectl("apply", "-n", namespace, "-f", str(path))

    def waiting() -> str | None:
        pods = _get(cluster, namespace, "pods", "-l", "rebeam.io/child=w").get("items") or []
        for pod in pods:
            for status in pod.get("status", {}).get("containerStatuses") or []:
                reason = (status.get("state", {}).get("waiting") or {}).get("reason")
                if reason in ("ErrImagePull", "ImagePullBackOff"):
                    return str(reason)
        return None

    wait_for(waiting, timeout=60, what="the pod waiting for its image", interval=0.5)

    def failed() -> Json | None:
        status = _get(cluster, namespace, "supervisor", "absent").get("status") or {}
        return status if status.get("phase") == "Failed" else None

    status = wait_for(failed, timeout=60, what="init failed", interval=0.5)
    # It names the cause: the kubelet's waiting reason and message, which name the image.
    message = status["childExits"]["w"]["message"]
    assert message.startswith(
        "StartTimeout: not ready within startTimeout 8s: container actor waiting: "
    ), status
    assert "ImagePull" in message, status
    assert '"localhost/rebeam-absent:dev"' in message, status
    cluster.kubectl("delete", "-n", namespace, "-f", str(path), "--timeout=60s")


def _child(status: Json, name: str) -> Json:
    return next((c for c in status.get("children") or [] if c["name"] == name), {})


def test_helm_install_run_the_demo_delete_uninstall(
    cluster: Cluster,
    crds: list[str],
    namespace: str,
    app_namespace: str,
    nats: E2ENats,
    image: str,
    images: Engine | None,
    tmp_path: Path,
) -> None:
    chart = offline_chart(tmp_path)
    values = tmp_path / "values.yaml"
    release = release_values(cluster, nats.url, app_namespace, image, images)
    values.write_text(yaml.safe_dump(release))
    # The install step of docs/kubernetes.md: the NATS Secrets, for the test's NATS server.
    apply_nats_secrets(cluster, namespace, nats, tmp_path)
    # Every pod of the release and of the app must meet the Pod Security Standard "restricted":
    # the API server refuses any that does not (docs/security.md).
    for ns in (namespace, app_namespace):
        cluster.kubectl("label", "namespace", ns, *RESTRICTED)
    events = EventTap(nats, app_namespace)
    installed = False
    try:
        # helm install: the operator Deployment is Ready (its probe reached the API server
        # with the chart's ServiceAccount token).
        result = cluster.helm(
            "install", RELEASE, str(chart), "-n", namespace, "-f", str(values),
            "--wait", "--timeout", "100s",
        )  # fmt: skip
        installed = True
        assert "helm test rbe2e" in result.stdout  # NOTES.txt says what to do next
        pod = _get(cluster, namespace, "pods", "-l", "app.kubernetes.io/component=operator")
        (operator_pod,) = pod["items"]
        assert operator_pod["spec"]["serviceAccountName"] == DEPLOYMENT
        assert operator_pod["spec"]["containers"][0]["command"] == ["rebeam-operator"]
        if images is not None:  # it runs from the operator image, in a container
            status = operator_pod["status"]["containerStatuses"][0]
            assert status["image"] == images.name("operator"), status
            assert status["containerID"].startswith("podman://"), status

        # NetworkPolicies (on by default): the operator's, and the actor pods' in the watched
        # namespace (no NATS one: the release uses an external NATS).
        policies = {
            ns: cluster.kubectl(
                "get", "networkpolicies", "-n", ns, "-o", "name"
            ).stdout.split()
            for ns in (namespace, app_namespace)
        }  # fmt: skip
        assert policies == {
            namespace: [f"networkpolicy.networking.k8s.io/{DEPLOYMENT}"],
            app_namespace: [f"networkpolicy.networking.k8s.io/{RELEASE}-rebeam-actors"],
        }, policies

        tested = cluster.helm("test", RELEASE, "-n", namespace, "--timeout", "60s", check=False)
        # (Not `helm test --logs`: it fails to read the log of a test pod deleted on success.)
        assert tested.returncode == 0, tested.stdout + tested.stderr + _logs(cluster, namespace)
        assert "Succeeded" in tested.stdout

        # kubectl apply: the demo's actors call each other by name; the driver crashes counter
        # on purpose and calls the restarted counter by name again, then ends normally.
        manifest = tmp_path / "app.yaml"
        manifest.write_text(yaml.safe_dump(_demo_manifest(cluster, image, images)))
        cluster.kubectl("apply", "-n", app_namespace, "-f", str(manifest))

        def demo_done() -> Json | None:
            status = _get(cluster, app_namespace, "supervisor", "hello").get("status") or {}
            driver = _child(status, "driver").get("lastExit", {})
            return status if driver.get("reason") and _child(status, "counter") else None

        try:
            status = wait_for(demo_done, timeout=90, what="the driver to finish", interval=0.5)
        except Exception as exc:
            raise AssertionError(
                f"{exc}\nevents: {events.lines()}\n{operator_log(cluster, namespace, DEPLOYMENT)}"
            ) from exc
        driver = _child(status, "driver")
        assert driver["lastExit"]["reason"] == "normal", (driver, _logs(cluster, app_namespace))
        assert _child(status, "counter")["restarts"] == 1
        lines = events.lines()
        assert lines.index("exited counter crash") < lines.index("restarting counter crash")
        assert "exited driver normal" in lines
        crash = next(
            e for e in events.events() if e["event"] == "exited" and e["child"] == "counter"
        )
        assert crash["reason"]["crash"]["exception_type"] == "RuntimeError"

        def settled() -> bool:
            """Ready: greeter and the restarted counter run; the driver, transient and ended
            normally, wants nothing (2 of 3 children running)."""
            status = _get(cluster, app_namespace, "supervisor", "hello").get("status") or {}
            conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
            return status.get("ready") == "2/3" and conditions.get("Ready") == "True"

        wait_for(settled, timeout=30, what="greeter and the restarted counter ready", interval=0.5)
        if images is not None:
            _an_absent_image_is_a_failed_start(cluster, app_namespace, tmp_path)
        # The actor pods ran hardened (admitted under "restricted" above), without a token
        # for the API server: their one token is for NATS only (audience rebeam-nats).
        pods = _get(cluster, app_namespace, "pods", "-l", "rebeam.io/child=greeter")["items"]
        assert pods, "no greeter pod"
        for pod in pods:
            spec = pod["spec"]
            assert spec["automountServiceAccountToken"] is False
            assert spec["securityContext"]["runAsNonRoot"] is True
            assert spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
            sources = [
                source
                for volume in spec.get("volumes", [])
                for source in (volume.get("projected") or {}).get("sources") or []
            ]
            assert sources == [
                {
                    "serviceAccountToken": {
                        "audience": "rebeam-nats",
                        "expirationSeconds": 3600,
                        "path": "nats-token",
                    }
                }
            ], sources
        # kubectl logs: the API server reaches the node's log endpoint for both kinds of pod.
        logs = cluster.kubectl("logs", "-n", namespace, f"deployment/{DEPLOYMENT}", "--tail=5")
        assert logs.stdout.strip(), "no operator log"
        greeter = pods[0]["metadata"]["name"]
        logs = cluster.kubectl("logs", "-n", app_namespace, greeter, check=False)
        assert logs.returncode == 0, logs.stderr
        shown = cluster.kubectl("get", "supervisors,actors", "-n", app_namespace).stdout
        assert "supervisor.rebeam.io/hello" in shown, shown
        assert "one_for_one" in shown, shown
        counter_row = next(line for line in shown.splitlines() if "hello-counter" in line)
        assert "hello-counter-2" in counter_row, shown  # the second incarnation's pod
        described = cluster.kubectl("describe", "supervisor", "hello", "-n", app_namespace).stdout
        assert "Restarting" in described, described
        assert "counter exited" in described, described

        # kubectl delete: the tree shuts down in reverse start order, then the supervisor.
        cluster.kubectl("delete", "-n", app_namespace, "-f", str(manifest), "--timeout=60s")
        wait_for(
            lambda: "shutdown shutdown" in events.lines(),
            timeout=30,
            what=f"the supervisor's shutdown event (got {events.lines()})",
        )
        lines = events.lines()
        assert lines.index("exited counter shutdown") < lines.index("exited greeter shutdown")
        assert lines.index("exited greeter shutdown") < lines.index("shutdown shutdown")
        wait_for(
            lambda: not _get(cluster, app_namespace, "pods").get("items"),
            timeout=30,
            what="the app's pods gone",
        )
        assert not _get(cluster, app_namespace, "supervisors,actors").get("items")

        # helm uninstall: nothing left but the CRDs.
        cluster.helm("uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "60s")
        installed = False
        selector = f"app.kubernetes.io/instance={RELEASE}"

        def leftovers() -> list[str]:
            found = []
            for ns_args in (["-n", namespace], ["-n", app_namespace]):
                listing = cluster.kubectl(
                    "get", "all,serviceaccounts,roles,rolebindings,networkpolicies,configmaps,"
                    "secrets", "-l", selector, *ns_args, "-o", "name",
                ).stdout.split()  # fmt: skip
                found += listing
            found += cluster.kubectl(
                "get", "clusterroles,clusterrolebindings", "-l", selector, "-o", "name"
            ).stdout.split()
            found += cluster.kubectl(
                "get", "secrets", "-n", namespace, "-l", "owner=helm", "-o", "name"
            ).stdout.split()
            return found

        wait_for(lambda: not leftovers(), timeout=60, what=f"nothing left (got {leftovers()})")
        remaining = cluster.kubectl("get", "crd", "-o", "name").stdout.split()
        assert "customresourcedefinition.apiextensions.k8s.io/supervisors.rebeam.io" in remaining
        assert "customresourcedefinition.apiextensions.k8s.io/actors.rebeam.io" in remaining
    finally:
        events.close()
        if installed:
            cluster.helm("uninstall", RELEASE, "-n", namespace, "--wait", check=False)
