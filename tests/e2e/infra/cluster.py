"""What e2e tests hold: a cluster (ours or an existing one), its clients, and helpers."""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from .binaries import BinariesMissing, find_binary, kubectl
from .controlplane import ControlPlane, write_kubeconfig
from .kubelet import ProcessKubelet
from .procs import wait_for

__all__ = ["Cluster"]

log = logging.getLogger("rebeam.e2e.cluster")

Json = dict[str, Any]


@dataclass
class Cluster:
    """A Kubernetes cluster for the e2e tests.

    ``local`` clusters are our own control plane plus the process kubelet (``kubelet`` is then
    set, with its fault switches); otherwise the cluster is an existing one named by a kubeconfig.
    """

    kubeconfig: Path
    workdir: Path
    control_plane: ControlPlane | None = None
    kubelet: ProcessKubelet | None = None

    # -- starting and stopping --

    @classmethod
    @contextmanager
    def local(
        cls, workdir: Path, *, crds: Path | None = None, containers: bool = False
    ) -> Iterator[Cluster]:
        """Start etcd, kube-apiserver, kube-controller-manager and a process kubelet.

        ``crds``: a directory of CustomResourceDefinitions to install before the controllers
        start (best effort: a broken CRD is reported by whoever applies it next, e.g. the
        ``crds`` fixture). ``containers``: the kubelet runs pods from their images
        (infra/containers.py) instead of as processes."""

        def install(plane: ControlPlane) -> None:
            if crds is None:
                return
            try:
                cls(plane.kubeconfig, workdir).apply_crds(crds, wait_for_gc=False)
            except Exception as exc:
                log.warning("CRDs in %s not installed at start: %s", crds, exc)

        plane = ControlPlane.start(workdir / "controlplane", before_controllers=install)
        kubelet: ProcessKubelet | None = None
        try:
            kubelet = ProcessKubelet(
                kubeconfig=plane.kubeconfig,
                server=plane.server,
                ca_cert=plane.pki.ca_cert,
                workdir=workdir / "kubelet",
                pki=plane.pki,
                containers=containers,
            )
            kubelet.start()
            cluster = cls(plane.kubeconfig, workdir, plane, kubelet)
            cluster.wait_ready()
            yield cluster
        finally:
            if kubelet is not None:
                kubelet.stop()
            plane.stop()

    @contextmanager
    def container_node(
        self, *namespaces: str, node_name: str = "rebeam-e2e-containers"
    ) -> Iterator[ProcessKubelet]:
        """A second node, in container mode (infra/containers.py), that runs the pods of
        ``namespaces`` from their images while the first node runs every other pod as
        processes. Stopped, with every container it ran, when the block ends."""
        with self.second_node(*namespaces, node_name=node_name, containers=True) as node:
            yield node

    @contextmanager
    def second_node(
        self, *namespaces: str, node_name: str, containers: bool
    ) -> Iterator[ProcessKubelet]:
        """A second node that runs the pods of ``namespaces`` (as containers or processes),
        stopped with all it ran when the block ends; the test may stop it sooner."""
        if self.kubelet is None or self.control_plane is None:
            raise RuntimeError("a second node needs the local control plane")
        plane = self.control_plane
        node = ProcessKubelet(
            kubeconfig=plane.kubeconfig,
            server=plane.server,
            ca_cert=plane.pki.ca_cert,
            workdir=self.workdir / node_name,
            node_name=node_name,
            containers=containers,
            placement=self.kubelet.placement,
            spare=False,
            pki=plane.pki,
        )
        node.start()
        try:
            for namespace in namespaces:
                self.kubelet.placement.route(namespace, node_name)
            yield node
        finally:
            for namespace in namespaces:
                self.kubelet.placement.unroute(namespace)
            node.stop()
            # Its pods would wait for the pod garbage collector: remove them now, and the node.
            core = client.CoreV1Api(self.api_client())
            pods = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node_name}")
            for pod in pods.items:
                with suppress(client.ApiException):
                    core.delete_namespaced_pod(
                        pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0
                    )
            core.delete_node(node_name)

    @classmethod
    @contextmanager
    def existing(cls, kubeconfig: Path, workdir: Path) -> Iterator[Cluster]:
        """An existing cluster (kind, a hosted one): nothing is started or stopped."""
        cluster = cls(kubeconfig, workdir)
        cluster.wait_ready()
        yield cluster

    @property
    def local_control_plane(self) -> bool:
        return self.control_plane is not None

    def wait_ready(self, timeout: float = 60.0) -> None:
        """The API answers and the controllers work (the ``default`` ServiceAccount exists)."""
        core = client.CoreV1Api(self.api_client())

        def ready() -> bool:
            if self.control_plane is not None:
                self.control_plane.check_running()
            try:
                core.read_namespaced_service_account("default", "default")
            except client.ApiException as exc:
                if exc.status == 404:
                    return False
                raise
            return True

        wait_for(ready, timeout=timeout, what="the default ServiceAccount (controllers running)")

    # -- clients --

    def api_client(self) -> client.ApiClient:
        """A synchronous client with the admin credentials of the kubeconfig."""
        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def _admin_configuration(self) -> client.Configuration:
        configuration = client.Configuration()
        config.load_kube_config(
            config_file=str(self.kubeconfig), client_configuration=configuration
        )
        return configuration

    def admin_token(self) -> str:
        """The admin's bearer token (the static one of our control plane, else the
        kubeconfig user's): what the rebeam CLI presents to the operator as a person."""
        if self.control_plane is not None:
            return self.control_plane.admin_token
        header = str((self._admin_configuration().api_key or {}).get("authorization") or "")
        token = header.removeprefix("Bearer ").strip()
        if not token:
            raise RuntimeError("the kubeconfig's user has no bearer token")
        return token

    def token_client(self, token: str) -> client.ApiClient:
        """A client that authenticates with ``token`` alone: exactly its permissions."""
        admin = self._admin_configuration()
        configuration = client.Configuration(host=admin.host)
        configuration.ssl_ca_cert = admin.ssl_ca_cert
        configuration.verify_ssl = admin.verify_ssl
        configuration.tls_server_name = admin.tls_server_name
        configuration.api_key = {"BearerToken": token}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
        return client.ApiClient(configuration)

    def token_kubeconfig(self, token: str, path: Path, user: str = "token-user") -> Path:
        """A kubeconfig file with ``token`` only (for kubectl, helm, or a subprocess)."""
        admin = self._admin_configuration()
        if not admin.ssl_ca_cert:
            raise RuntimeError("token_kubeconfig needs a cluster CA in the kubeconfig")
        return write_kubeconfig(
            path, server=admin.host, ca_cert=Path(admin.ssl_ca_cert), token=token, user=user
        )

    def service_account_token(
        self,
        namespace: str,
        name: str,
        *,
        expiration_seconds: int = 3600,
        audiences: list[str] | None = None,
    ) -> str:
        """Mint a token for a ServiceAccount through the TokenRequest API."""
        spec: Json = {"expirationSeconds": expiration_seconds}
        if audiences:
            spec["audiences"] = audiences
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        core = client.CoreV1Api(self.api_client())
        response = core.create_namespaced_service_account_token(name, namespace, body)
        return str(response.status.token)

    def service_account_client(self, namespace: str, name: str) -> client.ApiClient:
        """A client acting as the ServiceAccount ``namespace/name``, with just its permissions."""
        return self.token_client(self.service_account_token(namespace, name))

    # -- namespaces --

    def create_namespace(self, hint: str = "e2e") -> str:
        """A fresh namespace, returned once its ``default`` ServiceAccount exists."""
        slug = re.sub(r"[^a-z0-9-]+", "-", hint.lower()).strip("-")[:40].strip("-") or "e2e"
        name = f"{slug}-{secrets.token_hex(3)}"
        core = client.CoreV1Api(self.api_client())
        core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

        def has_default_account() -> bool:
            try:
                core.read_namespaced_service_account("default", name)
            except client.ApiException as exc:
                if exc.status == 404:
                    return False
                raise
            return True

        wait_for(has_default_account, timeout=30, what=f"ServiceAccount {name}/default")
        return name

    def delete_namespace(self, name: str) -> None:
        """Start the deletion (the namespace controller finishes it); do not wait."""
        core = client.CoreV1Api(self.api_client())
        try:
            core.delete_namespace(name, propagation_policy="Background")
        except client.ApiException as exc:
            if exc.status != 404:
                raise

    # -- objects --

    def apply_crds(
        self, directory: Path, timeout: float = 30.0, *, wait_for_gc: bool = True
    ) -> list[str]:
        """Create or replace every CustomResourceDefinition in ``directory``'s YAML files, wait
        until each is Established and (``wait_for_gc``) known to the garbage collector, so that
        objects owned by custom objects are collected from the first test on. Returns names."""
        extensions = client.ApiextensionsV1Api(self.api_client())
        names: list[str] = []
        for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
            for document in yaml.safe_load_all(path.read_text()):
                if not document or document.get("kind") != "CustomResourceDefinition":
                    continue
                name = document["metadata"]["name"]
                try:
                    current = extensions.read_custom_resource_definition(name)
                except client.ApiException as exc:
                    if exc.status != 404:
                        raise
                    extensions.create_custom_resource_definition(document)
                else:
                    document["metadata"]["resourceVersion"] = current.metadata.resource_version
                    extensions.replace_custom_resource_definition(name, document)
                names.append(name)

        def established(name: str) -> Callable[[], bool]:
            def check() -> bool:
                crd = extensions.read_custom_resource_definition(name)
                conditions = crd.status.conditions or [] if crd.status else []
                return any(c.type == "Established" and c.status == "True" for c in conditions)

            return check

        for name in names:
            wait_for(established(name), timeout=timeout, what=f"CRD {name} Established")
        if wait_for_gc:
            for name in names:
                self._wait_garbage_collector_knows(extensions.read_custom_resource_definition(name))
        return names

    def _wait_garbage_collector_knows(self, crd: Any, timeout: float = 90.0) -> None:
        """Wait until the garbage collector resolves the CRD's kind in ownerReferences.

        It rediscovers resources every 30 s, and until then it cannot collect objects owned by
        the new kind. The probe: a ConfigMap owned by an object of that kind that does not
        exist, which the garbage collector deletes as soon as it can look the owner up.
        """
        version = next(v.name for v in crd.spec.versions if v.storage)
        owner = {
            "apiVersion": f"{crd.spec.group}/{version}",
            "kind": crd.spec.names.kind,
            "name": "absent",
            "uid": str(uuid.uuid4()),
        }
        core = client.CoreV1Api(self.api_client())
        probe = f"gc-probe-{secrets.token_hex(4)}"
        namespace = "default"  # a namespaced owner is looked up in the dependent's namespace
        core.create_namespaced_config_map(
            namespace,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": probe, "ownerReferences": [owner]},
            },
        )

        def collected() -> bool:
            try:
                core.read_namespaced_config_map(probe, namespace)
            except client.ApiException as exc:
                if exc.status == 404:
                    return True
                raise
            return False

        wait_for(collected, timeout=timeout, what=f"garbage collector to know {crd.metadata.name}")

    def wait_pod(
        self,
        namespace: str,
        name: str,
        condition: Callable[[Json], bool],
        *,
        timeout: float = 60.0,
        what: str = "a condition",
    ) -> Json:
        """Poll the pod (as a camelCase dict) until ``condition`` holds; return it."""
        api = self.api_client()
        core = client.CoreV1Api(api)

        def check() -> Json | None:
            pod: Json = api.sanitize_for_serialization(core.read_namespaced_pod(name, namespace))
            return pod if condition(pod) else None

        return wait_for(check, timeout=timeout, what=f"pod {namespace}/{name}: {what}")

    def wait_pod_gone(self, namespace: str, name: str, *, timeout: float = 60.0) -> None:
        core = client.CoreV1Api(self.api_client())

        def gone() -> bool:
            try:
                core.read_namespaced_pod(name, namespace)
            except client.ApiException as exc:
                if exc.status == 404:
                    return True
                raise
            return False

        wait_for(gone, timeout=timeout, what=f"pod {namespace}/{name} deleted")

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run helm (built by testinfra/build.sh, else on PATH) against this cluster."""
        try:
            binary = str(find_binary("helm"))
        except BinariesMissing:
            if self.local_control_plane or not shutil.which("helm"):
                raise
            binary = "helm"
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "HELM_CACHE_HOME": str(self.workdir / "helm" / "cache"),
            "HELM_CONFIG_HOME": str(self.workdir / "helm" / "config"),
            "HELM_DATA_HOME": str(self.workdir / "helm" / "data"),
        }
        return subprocess.run(
            [binary, *args], env=env, check=check, capture_output=True, text=True, timeout=120
        )

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; output captured as text."""
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        return subprocess.run(
            [kubectl(), *args], env=env, check=check, capture_output=True, text=True, timeout=60
        )
