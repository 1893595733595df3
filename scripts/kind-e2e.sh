#!/usr/bin/env bash
# rebeam on a kind cluster, the way a user installs it. NOT run on the development machine
# (no Docker engine there); .github/workflows/e2e-kind.yml runs it on a hosted CI.
#
#   scripts/kind-e2e.sh            create the cluster, build and load the images, helm install
#                                  (with the official NATS chart), apply the demo and watch it
#   scripts/kind-e2e.sh --tests    then run the e2e tests against the cluster
#                                  (REBEAM_E2E_KUBECONFIG) with a NATS both pods and the test
#                                  process reach
#   scripts/kind-e2e.sh --delete   delete the cluster and the test NATS container
#
# Needs: docker, kind, kubectl, helm (3.x), and for --tests the dev venv (make venv).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cluster="${KIND_CLUSTER:-rebeam}"
tag="${REBEAM_IMAGE_TAG:-dev}"
ns="${REBEAM_NAMESPACE:-rebeam-system}"
kubeconfig="${KIND_KUBECONFIG:-$root/.cache/kind-$cluster.kubeconfig}"
export KUBECONFIG="$kubeconfig"

say() { printf '\n==> %s\n' "$*"; }

if [[ "${1:-}" == "--delete" ]]; then
  kind delete cluster --name "$cluster"
  docker rm -f "$cluster-test-nats" >/dev/null 2>&1 || true
  exit 0
fi

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { echo "kind-e2e: $tool is required" >&2; exit 1; }
done

say "kind cluster $cluster"
mkdir -p "$(dirname "$kubeconfig")"
if ! kind get clusters | grep -qx "$cluster"; then
  kind create cluster --name "$cluster" --wait 120s
fi
kind get kubeconfig --name "$cluster" > "$kubeconfig"

say "images (docker build, kind load docker-image)"
cd "$root"
docker build -f images/operator.Dockerfile -t "rebeam-operator:$tag" .
docker build -f images/actor.Dockerfile -t "rebeam-actor:$tag" .
docker build -f images/demo.Dockerfile --build-arg "BASE=rebeam-actor:$tag" -t "rebeam-demo:$tag" .
for image in operator actor demo; do
  kind load docker-image --name "$cluster" "rebeam-$image:$tag"
done

say "helm install (with the official NATS chart, one server for kind)"
helm repo add nats https://nats-io.github.io/k8s/helm/charts/ >/dev/null 2>&1 || true
helm dependency build charts/rebeam
helm upgrade --install rebeam charts/rebeam -n "$ns" --create-namespace \
  --set operator.image.repository=rebeam-operator \
  --set operator.image.tag="$tag" \
  --set operator.actorImage="rebeam-demo:$tag" \
  --set nats.config.cluster.enabled=false \
  --set nats.config.jetstream.fileStore.pvc.size=1Gi \
  --wait --timeout 5m
helm test rebeam -n "$ns" --timeout 2m

say "the demo: kubectl apply -f examples/demo/app.yaml"
kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f -
kubectl delete supervisor hello -n demo --ignore-not-found --wait=true
kubectl apply -n demo -f examples/demo/app.yaml
deadline=$((SECONDS + 180))
phase=""
while [[ "$phase" != "Terminated" ]]; do
  if (( SECONDS > deadline )); then
    echo "kind-e2e: the demo did not finish within 180 s" >&2
    kubectl describe supervisor hello -n demo >&2
    kubectl logs -n "$ns" deployment/rebeam-operator --tail=80 >&2 || true
    exit 1
  fi
  kubectl get supervisors,actors -n demo
  phase="$(kubectl get supervisor hello -n demo -o jsonpath='{.status.phase}')"
  sleep 3
done
kubectl describe supervisor hello -n demo
kubectl delete -n demo -f examples/demo/app.yaml --wait=true

if [[ "${1:-}" == "--tests" ]]; then
  say "e2e tests against kind (a NATS container on the kind network: pods and tests reach it)"
  # The tests run operators of their own (and install the chart themselves): a cluster-wide
  # operator left running would act on their objects too.
  helm uninstall rebeam -n "$ns" --wait
  docker rm -f "$cluster-test-nats" >/dev/null 2>&1 || true
  docker run -d --name "$cluster-test-nats" --network kind nats:2.10.22 -js >/dev/null
  nats_ip="$(docker inspect -f '{{(index .NetworkSettings.Networks "kind").IPAddress}}' \
    "$cluster-test-nats")"
  export REBEAM_E2E_KUBECONFIG="$kubeconfig"
  export REBEAM_E2E_IMAGE="rebeam-demo:$tag"
  export REBEAM_E2E_OPERATOR_IMAGE="rebeam-operator:$tag"
  export REBEAM_E2E_NATS_URL="nats://$nats_ip:4222"
  "$root/.venv/bin/pytest" "$root/tests/e2e" -m e2e -v
fi
say "done: kubectl get supervisors,actors -A; scripts/kind-e2e.sh --delete to clean up"
