#!/bin/bash
# Copy a finished sweep's per-trial records and diagnostics from its study's MLflow store into
# docs/results/<sweep>/ (one pair of Parquet files per child run, named by its run id), where
# `python -m flosssweep.report --from-parquet docs/results/<sweep>` reads them without MLflow.
#   runs/export.sh STUDY EXPERIMENT      e.g.  runs/export.sh exponents_family exponents-family
set -euo pipefail
study="$1" experiment="$2"
here="$(cd "$(dirname "$0")/.." && pwd)"
source="$here/runs/$study/mlartifacts/$experiment"
dest="$here/docs/results/$(echo "$experiment" | tr - _)"
[ -d "$source" ] || { echo "runs/export.sh: no artifacts of experiment $experiment in $source" >&2; exit 2; }
mkdir -p "$dest"
for run in "$source"/*/; do
  id="$(basename "$run")"
  for kind in records diagnostics; do
    [ -f "$run/artifacts/$kind.parquet" ] && cp "$run/artifacts/$kind.parquet" "$dest/$id-$kind.parquet"
  done
done
echo "$(ls "$dest" | grep -c records) record file(s) in $dest"
