#!/usr/bin/env bash
# Build (or reuse) the binaries of the e2e test control plane:
#   kube-apiserver, kube-controller-manager  from testinfra/go/kube  (k8s.io/kubernetes)
#   etcd                                     from testinfra/go/etcd  (go.etcd.io/etcd/server/v3)
#   helm                                     from testinfra/go/helm  (helm.sh/helm/v3)
# Every version is pinned by the committed go.mod/go.sum of those wrapper modules.
#
# The binaries go to a cache outside the repository, keyed by a hash of this script, the
# wrapper modules and the Go version, so a fresh clone on the same machine reuses them:
#   ${REBEAM_CACHE:-$HOME/.cache/rebeam}/controlplane/<key>/
# and <repo>/.cache/controlplane is pointed at that directory (the tests look there, unless
# REBEAM_CONTROLPLANE_BIN names another directory).
#
#   bash testinfra/build.sh              build if needed, print the directory
#   bash testinfra/build.sh --print-dir  only print the directory it would use
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cache_root="${REBEAM_CACHE:-$HOME/.cache/rebeam}/controlplane"

key="$(
    cd "$here"
    {
        go version
        sha256sum build.sh
        find go -type f \( -name go.mod -o -name go.sum -o -name '*.go' \) -print0 \
            | sort -z | xargs -0 sha256sum
    } | sha256sum | cut -c1-16
)"
out="$cache_root/$key"
binaries=(kube-apiserver kube-controller-manager etcd helm)

link() {
    mkdir -p "$repo/.cache"
    ln -sfn "$out" "$repo/.cache/controlplane"
}

if [ "${1:-}" = "--print-dir" ]; then
    echo "$out"
    exit 0
fi

cached() {
    if [ -f "$out/BUILT" ]; then
        link
        echo "control plane binaries: $out (cached)"
        exit 0
    fi
}
cached

# One build at a time per cache (CI and a developer may start one together): wait, re-check.
mkdir -p "$cache_root"
exec 9>"$cache_root/.lock"
flock 9
cached

tmp="$(mktemp -d "$cache_root/.build-$key.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS

# kube-apiserver and kube-controller-manager: one build, so shared packages compile once.
(
    cd "$here/go/kube"
    kube_version="$(go list -m -f '{{.Version}}' k8s.io/kubernetes)"
    minor="${kube_version#v1.}"; minor="${minor%%.*}"
    pkg=k8s.io/component-base/version
    ldflags="-s -w -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    echo "building kube-apiserver, kube-controller-manager $kube_version ..."
    go build -mod=readonly -ldflags "$ldflags" -o "$tmp/" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
)
(
    cd "$here/go/etcd"
    echo "building etcd $(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3) ..."
    go build -mod=readonly -ldflags "-s -w" -o "$tmp/etcd" .
)
(
    cd "$here/go/helm"
    helm_version="$(go list -m -f '{{.Version}}' helm.sh/helm/v3)"
    echo "building helm $helm_version ..."
    go build -mod=readonly -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version" \
        -o "$tmp/helm" helm.sh/helm/v3/cmd/helm
)

for binary in "${binaries[@]}"; do
    [ -x "$tmp/$binary" ] || { echo "build.sh: $binary was not built" >&2; exit 1; }
done
{
    echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) in $((SECONDS - start))s with $(go version)"
    "$tmp/kube-apiserver" --version
    "$tmp/etcd" --version | head -1
    "$tmp/helm" version --short
} > "$tmp/BUILT"
rm -rf "$out"  # a half-built leftover, never a finished one (that exits above)
mv -T "$tmp" "$out"
trap - EXIT
link
cat "$out/BUILT"
echo "control plane binaries: $out"
