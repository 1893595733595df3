#!/usr/bin/env bash
# Copy the generated CRDs (crds/, from `make crds`) into the Helm chart (charts/rebeam/crds/).
# Never edit either by hand: tests/chart/test_chart_files.py checks they are byte-identical.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/charts/rebeam/crds"
mkdir -p "$dest"
rm -f "$dest"/*.yaml
cp "$root"/crds/*.yaml "$dest"/
echo "copied $(ls "$root"/crds/*.yaml | wc -l) CRD(s) into charts/rebeam/crds/"
