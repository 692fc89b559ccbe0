#!/usr/bin/env bash
# Every GPU check of the project, in order, each bounded by `timeout`, results written under $OUT as
# they come (so a run cut short still returns what it measured). For a bare GPU machine prepared as
# ../shared/device/README.md says (.gpu/ copied along); run from the project root:
#
#   bash scripts/gpu_checks.sh headline # the headline first: search + 3-seed retrain, within 10 minutes
#   bash scripts/gpu_checks.sh quick    # the same, --quick (about 3 minutes): check the stage works
#   bash scripts/gpu_checks.sh start    # a trial's start to its first step, first and second trial
#   bash scripts/gpu_checks.sh speed    # CUDA tests, throughput (a)-(e), packed trials with and without MPS
#   bash scripts/gpu_checks.sh mps      # packed trials under MPS only
#   bash scripts/gpu_checks.sh search   # a short space=full search: trial seconds / (slots x wall)
#   bash scripts/gpu_checks.sh record   # the GPU record: 108 curves of space=full at full width (2-5 min?)
#   bash scripts/gpu_checks.sh record-quick  # the same, 10 curves of 2 epochs: check the stage works
#   bash scripts/gpu_checks.sh headline start
#
# Everything goes to one file, $OUT/gpu-checks.log (the device tool brings back only a few files),
# except the headline's table, $OUT/headline.json, rewritten as each of its phases ends. The
# headline and the search start NVIDIA's MPS themselves (and stop it after).
# GPU_KIT: the .gpu/ folder (default ./.gpu); GPU_CHECKS_SRC: run another checkout (e.g. a
# `git archive` of one commit) instead of this one.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
kit=$(cd "${GPU_KIT:-.gpu}" && pwd)
OUT=${OUT:-/tmp/gpu-checks}; mkdir -p "$OUT"
report="$OUT/gpu-checks.log"
source "$kit/env.sh" >> "$report" 2>&1
src=${GPU_CHECKS_SRC:-$root}
export PYTHONPATH="$src:/tmp/gpu-site"
python3 -c "import pytest" 2>/dev/null || export PYTHONPATH="$PYTHONPATH:$kit/pytest-site"
cd "$src"
nvidia-smi -L >> "$report" 2>&1

log() { echo "== $(date +%T) $*" | tee -a "$report"; }
step() {  # step NAME SECONDS command...: output appended to the report
  local name=$1 limit=$2; shift 2
  log "start $name"
  timeout "$limit" "$@" >> "$report" 2>&1
  log "end $name rc=$?"
}
mps() {  # mps on|off: NVIDIA's Multi-Process Service lets kernels of several processes run at once
  if [ "$1" = on ]; then nvidia-cuda-mps-control -d >> "$report" 2>&1; else echo quit | nvidia-cuda-mps-control >> "$report" 2>&1; fi
  sleep 1
  log "mps $1: $(pgrep -c nvidia-cuda-mps) MPS processes"
}
bench=(python3 benchmarks/throughput.py --device cuda --data-dir "$FMNIST" --images 16384)
mps_stage() {
  mps on
  for n in 2 4 8; do step "packed-$n-mps" 90 "${bench[@]}" --only d --packed "$n" --packed-seconds 4; done
  step packed-4-mps-batch256 60 "${bench[@]}" --only d --packed 4 --packed-seconds 4 --batch-size 256
  mps off
  # One process at 4x the batch: about what four trials stacked into one process (vmap) could reach.
  step one-process-batch512 60 "${bench[@]}" --only a --repeats 1 --batch-size 512
}


headline() {  # headline NAME [--quick]: benchmarks/headline.py, its table under $OUT as it comes
  local name=$1; shift
  step "$name" 590 python3 benchmarks/headline.py --storage /tmp/runs --name "$name" --data-dir "$FMNIST" \
    --json "$OUT/headline.json" "$@"
  tar -czf "$OUT/$name-report.tgz" -C /tmp/runs "$name/report" "$name/run.json" "$name/headline.json" 2>/dev/null
}

record() {  # record NAME key=value...: curves for the replay (docs/replay.md), no early stopping; its
  # tables and record.json under $OUT as NAME.tgz, to commit under benchmarks/records/. Four trials
  # share the GPU (gpus_per_trial=0.25), as in the standard budget. Cut short, it keeps what completed.
  local name=$1; shift
  mps on
  step "$name" 540 python3 -m search.replay.record space=full budget=standard gpus_per_trial=0.25 concurrency=4 \
    data_dir="$FMNIST" storage=/tmp/runs name="$name" "$@"
  mps off
  tar -czf "$OUT/$name.tgz" -C /tmp/runs "$name/report" "$name/run.json" "$name/record.json" 2>/dev/null
}


for stage in "$@"; do
  case $stage in
    headline) headline headline;;
    quick) headline headline-quick --quick;;
    start) step trial-start 150 "${bench[@]}" --only e;;
    speed)
      step cuda-tests 150 python3 -m pytest -q -p no:cacheprovider -rs tests/test_trainer.py tests/test_augment.py -k "cuda or captured"
      step throughput 150 "${bench[@]}" --packed 4
      for n in 1 2 4 8; do step "packed-$n" 90 "${bench[@]}" --only d --packed "$n" --packed-seconds 4; done
      mps_stage
      step compile 150 "${bench[@]}" --only a --repeats 1 --compile
      ;;
    mps) mps_stage;;
    search)
      mps on
      start=$(date +%s.%N)
      step search 300 python3 -m search.run space=full budget=standard trials=16 max_epochs=4 grace=1 eta=2 \
        data_dir="$FMNIST" storage=/tmp/runs name=gpu-full
      end=$(date +%s.%N)
      python3 - "$start" "$end" >> "$report" 2>&1 <<'PY'
import sys
import pandas as pd
wall = float(sys.argv[2]) - float(sys.argv[1])
trials = pd.read_parquet("/tmp/runs/gpu-full/report/trials.parquet")
busy = trials["seconds"].sum()
slots = 4  # gpus_per_trial=0.25 on one GPU
print(f"{len(trials)} trials, {busy:.1f} trial-seconds, command wall {wall:.1f} s (Ray start and report included)")
print(f"efficiency = {busy:.1f} / ({slots} x {wall:.1f}) = {busy / (slots * wall):.3f}")
PY
      tar -czf "$OUT/gpu-full-report.tgz" -C /tmp/runs gpu-full/report gpu-full/run.json 2>/dev/null
      mps off
      ;;
    record) record gpu-record configs=100 repeats=8 max_epochs=15 subset=10000;;
    record-quick) record gpu-record-quick configs=8 repeats=2 max_epochs=2 subset=2000;;
    *) log "unknown stage $stage (headline, quick, start, speed, mps, search, record, record-quick)";;
  esac
done
log done
