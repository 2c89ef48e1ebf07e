#!/bin/bash
# Resume or start the named sweeps one after the other, at the lowest priority, their MLflow store in
# /work/main/runs/$STUDY and their Ray state in /tmp/sweep-ray (runs/README.md says how).
# STUDY (default exponents_family) names the store, so two studies can run side by side, one per core.
study="${STUDY:-exponents_family}"
cd /tmp/sweep-run
. /work/main/.venv/bin/activate
export RAY_AUTH_MODE=disabled PYTHONPATH=/tmp/sweep-run
mkdir -p /work/main/runs/$study
for s in "$@"; do
  extra="${EXTRA:-}"  # EXTRA=--extend: more rounds for a sweep that finished its own
  [ -z "$extra" ] && [ -d /tmp/sweep-ray/$(echo $s | tr _ -) ] && extra="--resume"
  nice -n 19 python -m flosssweep.run $s --tracking-uri sqlite:////work/main/runs/$study/mlflow.db \
    --storage-path /tmp/sweep-ray --address local --num-cpus ${CPUS:-1} --report-out /tmp/sweep-report/$s $extra || exit $?
done
