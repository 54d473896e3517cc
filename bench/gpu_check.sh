#!/usr/bin/env bash
# The one script to run on a GPU machine: the GPU tests, the kernel benchmarks (GB/s against a
# device copy, fused against unfused), then the training-throughput benchmark against PyTorch.
# It runs this checkout through PYTHONPATH, with no install step (the machine needs python3 with
# cupy, numpy, pytest, tqdm; torch for the peer). Full results go to the folder named by the first
# argument (default bench/out/); a short table is printed last. Budget: under 6 minutes (each stage
# has a timeout: 150 + 60 + 130 s at most, about 4 minutes when nothing hangs).
#   usage: bash bench/gpu_check.sh [OUT_DIR]
#   GPUNN_CHECK_DEVICE=cpu bash bench/gpu_check.sh /tmp/out   # a dry run of the plumbing, no GPU
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(mkdir -p "${1:-$ROOT/bench/out}" && cd "${1:-$ROOT/bench/out}" && pwd)
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
PY=${PYTHON:-python3}
DEVICE=${GPUNN_CHECK_DEVICE:-cuda}
t0=$SECONDS
stage() { echo "== $1 ($((SECONDS - t0))s)"; }

stage "device"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "no nvidia-smi"
  date -u +%F; "$PY" -m gpunn info --device "$DEVICE"; } > "$OUT/device.txt" 2>&1
cat "$OUT/device.txt"

stage "GPU tests"
xdist=$("$PY" -c "import xdist" 2>/dev/null && echo "-n 8")
timeout 150 "$PY" -m pytest -q -m gpu -p no:cacheprovider $xdist tests > "$OUT/gpu_tests.log" 2>&1
tests_rc=$?
tail -n 15 "$OUT/gpu_tests.log"

stage "kernel benchmarks"
timeout 60 "$PY" -m gpunn.bench.kernels --device "$DEVICE" --sizes 20,24 --repeat 30 --json "$OUT/kernels.json" \
  > "$OUT/kernels.txt" 2>&1
kernels_rc=$?

stage "training benchmark"
timeout 130 "$PY" -m gpunn bench --device "$DEVICE" --peers naive,torch --max-seconds 100 \
  --json "$OUT/train_bench.json" --plot "$OUT/train_bench.png" > "$OUT/train_bench.txt" 2>&1
bench_rc=$?

stage "summary"
{
  echo "gpu_check on $(head -n 1 "$OUT/device.txt"), $(date -u +%F), $((SECONDS - t0))s"
  echo "GPU tests (exit $tests_rc): $(grep -E '(passed|failed|error)' "$OUT/gpu_tests.log" | tail -n 1)"
  echo
  cat "$OUT/kernels.txt"; echo "(exit $kernels_rc)"
  echo
  cat "$OUT/train_bench.txt"; echo "(exit $bench_rc)"
} > "$OUT/summary.txt"
cat "$OUT/summary.txt"
[ "$tests_rc" -eq 0 ] && [ "$kernels_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
