#!/bin/bash
# Keep a stopped sweep's Ray state for the next work session: copy /tmp/sweep-ray/EXPERIMENT into
# runs/STUDY/ray_results/, dropping the state files of finished trials (their records are in their
# last checkpoint, and state files are most of the size). Run it after Ctrl-C has stopped the driver.
#   runs/save.sh STUDY EXPERIMENT      e.g.  runs/save.sh seeds horizon-xor-seeds
set -euo pipefail
study="$1" experiment="$2"
here="$(cd "$(dirname "$0")/.." && pwd)"
source="/tmp/sweep-ray/$experiment" dest="$here/runs/$study/ray_results"
[ -d "$source" ] || { echo "runs/save.sh: no Ray experiment folder $source" >&2; exit 2; }
mkdir -p "$dest" && rm -rf "${dest:?}/$experiment" && cp -a "$source" "$dest/"
for trial in "$dest/$experiment"/run_trial_*/; do
  newest="$(ls -d "$trial"checkpoint_* 2>/dev/null | sort | tail -1 || true)"
  if [ -n "$newest" ] && [ -f "$newest/records.parquet" ]; then find "$trial" -name state.pt -delete; fi
done
du -sh "$dest/$experiment"
