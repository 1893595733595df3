"""Test infrastructure of the e2e tier: a real Kubernetes control plane without Docker.

- :mod:`.controlplane` starts etcd, kube-apiserver and kube-controller-manager as local
  processes (binaries built by ``testinfra/build.sh``).
- :mod:`.kubelet` is the process kubelet: a stand-in node that runs pods as local processes.
- :mod:`.cluster` is what tests hold: API clients, ServiceAccount tokens, waiting helpers; it
  works the same on the local control plane and on an existing cluster (``REBEAM_E2E_KUBECONFIG``).
"""
