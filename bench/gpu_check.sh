#!/usr/bin/env bash
# The one script to run on a GPU machine. From this checkout through PYTHONPATH: no install step, no
# network (the machine needs python3 with cupy, numpy, pytest, tqdm; torch for the PyTorch peers).
#   usage: bash bench/gpu_check.sh [OUT_DIR]             (default bench/out/)
#   GPUNN_CHECK_DEVICE=cpu PYTHON=.venv/bin/python bash bench/gpu_check.sh /tmp/out
#                 a dry run of the plumbing, no GPU, as CI runs it (PYTHON: the stages' interpreter, default python3;
#                 the dry run's hooks import the test extra's ml_dtypes and mpi4py)
#   GPUNN_CHECK_STAGES=tests,precision bash bench/gpu_check.sh
#                 only the stages named (comma-separated; unset or empty: all), and the device stage, which always
#                 runs. Each other stage's summary.txt line says "--   NAME: not asked for (GPUNN_CHECK_STAGES)": no
#                 failure, it reserves no budget (below), so the named stages get the time, and bench/gpu_report.py
#                 gives its targets no verdict ("not measured: not asked for in this run"). A name not among the
#                 stages below is refused at once (exit 2, naming them), before anything runs or is written
#   GPUNN_CHECK_COMMIT=50d5e2c bash bench/gpu_check.sh
#                 the commit the run is of, named by the caller: device.txt and the report say it (device.txt adds
#                 what the checkout's .git says). The device tool may ship a stale .git with the current tree
#                 (session 23: HEAD 5f9f806 under main at 50d5e2c), so type it in: $(git rev-parse) there reads that one
#
# Stages, each writing its files into OUT_DIR and its line into OUT_DIR/summary.txt as soon as it ends
# (a kill keeps what finished):
#   device     nvidia-smi, gpunn info, and CuPy must be usable (gpunn's probe compiles and runs a kernel):
#              otherwise the script stops at once, failing, with the reason; so when gpunn info exits 2 (a
#              GPUNN_ setting it refuses: the FAIL line names info's error lines; unset or fix it and send the
#              call again); info failing otherwise fails the stage and the run goes on
#   tests      pytest -m "gpu or cupy_api" (the GPU tests, and tests/test_cupy_api.py's checks of gpunn's CuPy
#              calls against the real package); fails when a test fails or when no GPU test ran (all skipped =
#              CuPy unusable); a test still running after 60 s dumps every thread's stack into gpu_tests.log
#              (what a hang leaves to read)
#   kernels    elementwise kernels' GB/s against a device copy measured at each size (2^20 and 2^24), the
#              ensemble's Adam step (K=256 members in one launch) among them
#   train      gpunn bench on small, medium, deep and large against PyTorch eager float32 and PyTorch
#              bf16 autocast: gpunn's default rows (the step captured as a CUDA graph) in float32, tf32 and
#              bf16, and its eager step (--eager) beside each, where `gpunn bench --help` offers
#              --precision / --eager; fails when a default row ran without its graph (the reason is in
#              train.txt) and prints graph over eager per configuration
#   hooks      optional checks that run only where their feature has landed: bench/gpu_checks/NAME.py
#              for NAME in precision (issues 10-11: the measured member-vs-MLP errors, batched GemmEx
#              calls eager and captured, R², alignment), ensemble (issue 11), streams (issue 12), nccl
#              (issue 13, one rank), clip (gradient clipping, session 49, and a per-step schedule, session 50: a
#              clipped step's time, and a onecycle step's, over the plain one's, paired by round, for the medium
#              MLP and a small-x256 Ensemble, the default CUDA graph, float32; expected ~10-15 s; it exits 1 where a
#              clip or the per-step rate broke the capture). Contract:
#              `python bench/gpu_checks/NAME.py --device DEV --out DIR --max-seconds S`, exit 0 = pass;
#              no file = "not landed", not a failure. GPUNN_CHECK_<NAME>_SECONDS raises one hook's cap,
#              e.g. GPUNN_CHECK_STREAMS_SECONDS=240 (with GPUNN_CHECK_BUDGET=600) lets the streams hook
#              reach issue 12's 10^9-row stream (about 150 s on an H200; given less, the hook stops the
#              stream at its cap, a partial epoch). Each hook keeps 30 s for each later one, so a raised cap
#              cannot starve the hooks after it.
#   report     bench/gpu_report.py OUT_DIR > OUT_DIR/report.md: the run as a bench/RESULTS.md section
#              (card, driver, versions, the summary, each issue's target with its value: met, not met, or no
#              verdict where it was not measured or its stage was cut short part-way, saying why)
#
# Session 50 (2026-12-04, bench/RESULTS.md) measured issue 12's last owed figure, the 10^9-row stream (call 2:
# 0.98x, met), and ran the tests stage and the clip hook by hand; not call 1's kernels, train, precision, ensemble
# and nccl stages, whose figures stand from session 23. The next GPU session: call 1 first (the code of 24+ sessions
# since session 23's run, and two GPU tests changed in session 50 but not re-run there:
# test_weighted_loss_gradient_reads_y_and_its_weights_column, test_a_fit_continued_where_no_capture_stream_can_be_made...),
# then call 2 with what is left.
# The two calls that answer every owed GPU question of issues 10-13 in 15 minutes (900 s) of device time, counted from the machine's start (2-3 min) to its give-back, the gaps included: at worst
# 180 s start + 480 + ~20 s between the calls + 200 = 880 s (the rest: transfers, give_back). The machine
# stays warm only 30 s after a call: send the second at once, then give it back. At most 8 files come back
# from $OUT, hence the tar. A call that outlives its timeout_s (or the device time left, to which the tool
# lowers it where starts ate the budget) brings back nothing but what is already under $OUT, so each ends
# itself first (`timeout`, 15 s and 10 s before timeout_s): a killed run still returns its summary, console
# and tar; call 1 also leaves a tar of what it has so far every 20 s (gc-partial.tgz, removed once gc.tgz is
# written: unpack it where the tool's kill came first), and the streams hook saves into $OUT as it goes.
# In calls 1 and 3, SHA is this checkout's `git rev-parse --short HEAD`, run here and typed in (GPUNN_CHECK_COMMIT).
# 1. everything but the 10^9-row stream, with the bf16 ensemble row and room for the streams hook's
#    large-configuration .npy part (timeout_s 480; expected ~350-400 s: its own budget, 440 s, ends it
#    before the 460 s backstop, and stages that run late squeeze the last hooks, not the call; the clip hook,
#    last, expected ~10 s (not yet run on a GPU), keeps 30 s from each stage before it: session 23's 292 s call would have had room):
#    (while sleep 20; do tar czf /tmp/gcp.tgz -C /tmp/gc . 2>/dev/null; cp /tmp/gcp.tgz $OUT/gcp.tmp && mv $OUT/gcp.tmp $OUT/gc-partial.tgz; cp /tmp/gc.log $OUT/console.log; done) >/dev/null 2>&1 & timeout -k 5 460 env GPUNN_CHECK_COMMIT=SHA GPUNN_CHECK_BUDGET=440 GPUNN_CHECK_ENSEMBLE_SECONDS=90 GPUNN_CHECK_STREAMS_SECONDS=60 bash bench/gpu_check.sh /tmp/gc > /tmp/gc.log 2>&1; rc=$?; kill $!; cp /tmp/gc.log $OUT/console.log; cp /tmp/gc/summary.txt /tmp/gc/report.md $OUT/; tar czf $OUT/gc.tgz -C /tmp/gc . && rm -f $OUT/gc-partial.tgz; sed '/^### The stages/,$d' /tmp/gc/report.md || cat /tmp/gc/summary.txt; exit $rc
# 2. issue 12's 10^9-row stream against the in-memory rate (timeout_s 200, the most that fits after call 1's
#    worst; give it what call 1 actually left, below):
#    timeout -k 5 185 python3 bench/gpu_checks/streams.py --device cuda --out $OUT --max-seconds 180 --parts synthetic,synthetic_long > $OUT/streams-long.txt 2>&1; rc=$?; cat $OUT/streams-long.txt; exit $rc
#    The hook takes ~16 s before the epoch (the checks; 3 rounds of a 2^23-row stream epoch and an in-memory epoch,
#    alternated, after a warm-up epoch of each; the in-memory epoch just before the long one) and stops the epoch
#    5 s before --max-seconds, less twice an in-memory epoch's ~1.3 s (for the one just after it: the epoch's
#    ratio is the median of its ratios to those two): at 180, 10^9 rows finish while the stream runs at 6.4M
#    samples/s or more (the H200's: 6.98M, 143 s); a slower one is reported as a partial epoch, no verdict, with
#    the rate of the rows it trained (its progress is saved every 5 s). Call 1 ends
#    at its budget at the latest, so call 2 can have more: with B = `status`'s budget_left_s just before it
#    (less 180 where warm is false: a fresh start), use timeout_s min(600, B - 20), and in the command
#    `timeout -k 5` 15 s and `--max-seconds` 20 s below that (B = 300: 280, 265, 260, enough for 10^9 rows
#    down to 4.2M samples/s). Then give the machine back at once.
# Then, here, with gc.tgz (or, where only it came back, gc-partial.tgz) unpacked into GC_DIR:
# python bench/gpu_report.py GC_DIR --add streams=CALL2/streams.json > section.md is the bench/RESULTS.md
# section of both calls (CALL2: where the second call's files came back). A run killed part-way still
# reports what it finished.
# 3. a rerun after fixes: the tests and the hooks again, not the kernels, train and clip (their code unchanged: call
#    1's figures stand, and the 2 min they take go to the rest; where a fix touched clipping, the clip hook alone,
#    `python3 bench/gpu_checks/clip.py --device cuda --out $OUT --max-seconds 35`, in a call of its own
#    or after this one's command), as call 1 with GPUNN_CHECK_STAGES (timeout_s 310;
#    expected ~210-230 s: device 4, tests ~70, precision ~5, ensemble <= 60, streams ~85, nccl ~5, the report):
#    (while sleep 20; do tar czf /tmp/gcp.tgz -C /tmp/gc . 2>/dev/null; cp /tmp/gcp.tgz $OUT/gcp.tmp && mv $OUT/gcp.tmp $OUT/gc-partial.tgz; cp /tmp/gc.log $OUT/console.log; done) >/dev/null 2>&1 & timeout -k 5 295 env GPUNN_CHECK_COMMIT=SHA GPUNN_CHECK_STAGES=tests,precision,ensemble,streams,nccl GPUNN_CHECK_BUDGET=280 GPUNN_CHECK_ENSEMBLE_SECONDS=60 GPUNN_CHECK_STREAMS_SECONDS=110 bash bench/gpu_check.sh /tmp/gc > /tmp/gc.log 2>&1; rc=$?; kill $!; cp /tmp/gc.log $OUT/console.log; cp /tmp/gc/summary.txt /tmp/gc/report.md $OUT/; tar czf $OUT/gc.tgz -C /tmp/gc . && rm -f $OUT/gc-partial.tgz; sed '/^### The stages/,$d' /tmp/gc/report.md || cat /tmp/gc/summary.txt /tmp/gc.log; exit $rc
#    (a refused GPUNN_CHECK_STAGES writes nothing into /tmp/gc: the last `cat` shows why, from /tmp/gc.log). The
#    streams hook's 110 s (--max-seconds 105) takes in the whole 10^9-row epoch: its parts before it (the checks,
#    synthetic's 3 rounds, npy_large's and npy's 5: their rounds end at that count, well before their deadlines,
#    whatever the cap) took ~35 s in call 1, the epoch takes ~44 s at the H200's 22.7M samples/s, and it is stopped
#    only 5 s and twice an in-memory epoch (~1 s) before --max-seconds: done at ~80 s of the ~99 s it may run, so
#    any cap from ~90 s (--max-seconds 85) on. The stages before it leave it 110 s while they take under 140 s
#    (call 1's took 4 + 68 + 2 + 41 s), and the epoch is cut (a partial epoch, no verdict) only where they take
#    over ~160 s. The ensemble hook's 60 s is --max-seconds 55, under the 60 its bf16 row needs: that row (call 1's
#    0.95x gpunn-graph, 13.96x torch vmap) is not rerun (GPUNN_CHECK_ENSEMBLE_SECONDS=65 would, 5 s more).
#    With less device time, B = `status`'s budget_left_s just before it (less 180 where warm is false): timeout_s
#    min(310, B - 20), `timeout -k 5` 15 s and GPUNN_CHECK_BUDGET 30 s below that; a budget under ~255 s cuts the
#    10^9-row epoch (call 2 measured it whole; the nccl hook after it keeps its 30 s). Then, here, with gc.tgz (or
#    gc-partial.tgz) unpacked into GR_DIR: python bench/gpu_report.py GR_DIR > section.md, kernels and train
#    "not measured: not asked for in this run"; or the session's calls as one section:
#    python bench/gpu_report.py GC_DIR --add streams=CALL2/streams.json --merge GR_DIR > section.md
#    (each stage's figures the latest call's that ran it, here kernels and train call 1's and the rest the rerun's,
#    each figure naming its call's commit and time; a call killed in a stage before it wrote its figures leaves that
#    stage to the call before; --merge is repeatable, oldest first, refused for another GPU, a driver update said).
#
# Budget: everything fits in GPUNN_CHECK_BUDGET seconds (default 360, about 6 minutes with start-up; 330 until the
# clip hook came, whose 30 s reserve would have cut the tests stage's 90 s of it to 60, under the H200's ~70 s):
# each stage gets at most its cap (device 60+60, tests 130, kernels 45, train 190, hooks 40 each) and
# never more than what is left after the later stages' reserves (kernels 30, train 90, 30 per hook
# present; a stage not asked for reserves nothing), so a slow early stage cannot starve the rest; a stage with
# under 10 s is skipped, saying so, and the run then fails as incomplete.
set -uo pipefail
HOOKS="precision ensemble streams nccl clip"
STAGES="device tests kernels train $HOOKS"
# GPUNN_CHECK_STAGES: the stages to run, comma-separated (unset or empty: all); an unknown name is refused before
# anything runs or is written, as a typo would otherwise cost the device call the stage it meant
asked=" device "   # always: the report's heading, and whether CuPy and the GPUNN_ settings let anything run
named=${GPUNN_CHECK_STAGES:-}
IFS=', ' read -r -a names <<< "$named"
for name in ${names[@]+"${names[@]}"}; do
  [ -n "$name" ] || continue
  case " $STAGES " in
    *" $name "*) asked+="$name " ;;
    *) echo "gpu_check.sh: GPUNN_CHECK_STAGES='$named': no stage '$name'; the stages are ${STAGES// /, }" \
            "(device always runs)" >&2
       exit 2 ;;
  esac
done
[ -n "${named//[, ]/}" ] || asked=" $STAGES "   # none named: all
wants() { [[ "$asked" == *" $1 "* ]]; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(mkdir -p "${1:-$ROOT/bench/out}" && cd "${1:-$ROOT/bench/out}" && pwd)
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
PY=${PYTHON:-python3}
DEVICE=${GPUNN_CHECK_DEVICE:-cuda}
BUDGET=${GPUNN_CHECK_BUDGET:-360}
DRY=0; [ "$DEVICE" = cpu ] && DRY=1
t0=$SECONDS
failed=0
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
# OUT holds this run alone: an earlier run's files (the default bench/out is reused) are removed first, so that a
# stage skipped, not asked for, or killed before it wrote leaves none of its files to be read as this run's (the
# report's, and the train stage's look at train.json). Only the files the stages write, by name (OUT, and a hook's
# folder in it, may hold the user's): HOOK_FILES are what the hooks write into their folders beside NAME.json, the
# ensemble hook's later processes' JSON and the nccl hook's .npy sources (a kill leaves them, and gc.tgz takes them)
HOOK_FILES="ensemble/ensemble-graph.json ensemble/ensemble-bf16.json nccl/shard_x.npy nccl/shard_y.npy \
nccl/ensemble_x.npy nccl/ensemble_y.npy"
rm -f "$OUT"/{device.txt,gpu_tests.xml,gpu_tests.log,kernels.json,kernels.json.tmp,kernels.txt,train.json,train.txt} \
  "$OUT"/{train.png,report.md,report.err}
for hook in $HOOKS; do rm -f "$OUT/$hook.txt" "$OUT/$hook/$hook.json" "$OUT/$hook/$hook.json.tmp"; done
for file in $HOOK_FILES; do rm -f "$OUT/$file" "$OUT/$file.tmp"; done

stage() { echo "== $1 ($((SECONDS - t0))s)"; }
record() { echo "$1" | tee -a "$SUMMARY"; }   # one line per finished stage, written at once
# a stage's line, ending with the run's seconds so far (gpu_report charges each stage the difference from the line
# before: a line without them would charge the next stage with this one's time)
ended() { record "$1 ($((SECONDS - t0))s)"; }
# a stage's command, ended after $1 seconds by SIGINT, which pytest answers by writing its junit XML and its counts
# of what ran and a Python hook by printing where it was (SIGTERM ends either without a word); SIGKILL 10 s later
# for one stuck in a CUDA or NCCL call or that handles the signal and goes on, as gpunn's own commands do. timeout
# signals the command and then its process group (pytest-xdist's workers): the tests stage's pytest takes the
# first SIGINT only (GPUNN_TESTS_ONE_SIGINT, tests/conftest.py), so the second cannot cut its reporting short
bounded() { timeout -s INT -k 10 "$@"; }
# a stage's line from its exit code (124: ended by its time limit; what it wrote so far stays in OUT)
outcome() { if [ "$2" -eq 0 ]; then ended "ok   $1: $3"
            elif [ "$2" -eq 124 ]; then ended "FAIL $1: timed out, partial: $3"; failed=1
            else ended "FAIL $1 (exit $2): $3"; failed=1; fi; }
# seconds a stage may take: min(cap, what is left of the budget less what later stages reserve);
# 0 when under 10 s would be left
allow() { local left=$((BUDGET - (SECONDS - t0) - ${2:-0})); local cap=$1; [ "$left" -lt "$cap" ] && cap=$left
          [ "$cap" -lt 10 ] && cap=0; echo "$cap"; }
skip() { ended "SKIP $1: no budget left (the run is incomplete: it fails)"; failed=1; }
# a stage left out by GPUNN_CHECK_STAGES: no failure, and it reserves nothing below
not_asked() { record "--   $1: not asked for (GPUNN_CHECK_STAGES)"; }
present=0; for hook in $HOOKS; do wants "$hook" && [ -f "bench/gpu_checks/$hook.py" ] && present=$((present + 1)); done
HOOK_SECONDS=40; RESERVE_HOOKS=$((present * 30))   # later stages keep their share (the hooks that will run)
# a dry run checks the plumbing, not the budget: its hooks get the GPU's --max-seconds but 60 s more before they
# are cut (on a loaded CI machine the nccl hook's CPU stand-in, two MPI ranks, took ~45 s and was cut at 40)
HOOK_SLACK=0; [ "$DRY" = 1 ] && HOOK_SLACK=60
# and the ensemble hook the next GPU session's cap (call 1 below the header), under which it starts its graph rows'
# process, as it will there (under the default 40 s it may have too little left to start it)
[ "$DRY" = 1 ] && GPUNN_CHECK_ENSEMBLE_SECONDS=${GPUNN_CHECK_ENSEMBLE_SECONDS:-90}
RESERVE_TRAIN=0; RESERVE_KERNELS=0; wants train && RESERVE_TRAIN=90; wants kernels && RESERVE_KERNELS=30

stage "device"
{ bounded 30 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  date -u "+%F %H:%M UTC"
  git_says="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo ', with uncommitted changes')"
  if [ -n "${GPUNN_CHECK_COMMIT:-}" ]; then
    echo "commit $GPUNN_CHECK_COMMIT (named by GPUNN_CHECK_COMMIT; the checkout's .git says $git_says)"
  else echo "commit $git_says"; fi
  # torch's version from its package metadata (importing torch takes seconds): the report's heading names it in
  # every run, those that leave out the train stage (whose setup otherwise says it) included
  torch=$("$PY" -c "import importlib.metadata as m
try: print(m.version('torch'))
except m.PackageNotFoundError: print('not installed')" 2>/dev/null)
  [ -z "$torch" ] || echo "torch           $torch"
  info=$(bounded 60 "$PY" -m gpunn info --device "$DEVICE" 2>&1); info_rc=$?
  echo "$info"; } > "$OUT/device.txt" 2>&1
cat "$OUT/device.txt"
if [ "$DRY" = 0 ]; then
  reason=$(bounded 60 "$PY" -c "from gpunn import backend; c, n, r = backend.probe_cuda(); print(r or 'ok')" 2>&1 | tail -n 1)
  [ -n "$reason" ] || reason="the probe (compile and run a kernel, a CuPy elementwise kernel, a cuBLAS product) gave no answer in 60 s"
  if [ "$reason" != ok ]; then
    record "FAIL device: CuPy is not usable, nothing else was run: $reason"
    exit 3
  fi
fi
# gpunn info's status 2: a line says error, a GPUNN_ setting gpunn refuses (or a --device it cannot run). Every stage
# that reads that setting would fail where it reads it (GPUNN_FUSED_KERNELS: every fit), spending the device call
# (call 1: ~440 s) on failures; stopped here it costs ~20 s, and the call can be sent again with the setting unset or
# fixed. Another status (info itself crashed, or hung: 124) says nothing of the settings: the stage fails, the run
# goes on
if [ "$info_rc" -eq 2 ]; then
  # info's error lines ("KEY  error: ..." or indented under KEY) as "KEY: error: ...", each error once (a bad
  # GPUNN_GEMM is the cpu gemm line's and the environment line's)
  info_errors=$(echo "$info" | awk '!/^ / { key = /  / ? $0 : ""; sub(/  .*/, "", key) }
    /error: / { said = substr($0, index($0, "error: ")); if (!seen[said]++) print (key == "" ? "" : key ": ") said }')
  [ -n "$info_errors" ] || info_errors=$(echo "$info" | tail -n 1)
  record "FAIL device: gpunn info says error (exit 2: a setting it refuses, or a device it cannot run), nothing else was run: \
${info_errors//$'\n'/; }"
  exit 3
elif [ "$info_rc" -ne 0 ]; then
  [ "$info_rc" -eq 124 ] && info_rc="124: timed out after 60 s"
  ended "FAIL device: gpunn info (exit $info_rc): $(echo "$info" | tail -n 1)"
  failed=1
else
  ended "ok   device: $(head -n 1 "$OUT/device.txt")"
fi

stage "GPU tests"
cap=$(allow 130 $((RESERVE_KERNELS + RESERVE_TRAIN + RESERVE_HOOKS)))
if ! wants tests; then not_asked tests
elif [ "$cap" -eq 0 ]; then skip "tests"; else
  if [ "$DRY" = 1 ]; then  # the plumbing only: the GPU tests of one module against tests/fakecupy
    GPUNN_FAKE_CUPY=1 GPUNN_TESTS_ONE_SIGINT=1 bounded "$cap" "$PY" -m pytest -q -m gpu -p no:cacheprovider \
      tests/test_backend.py --junitxml="$OUT/gpu_tests.xml" > "$OUT/gpu_tests.log" 2>&1
  else
    xdist=$("$PY" -c "import xdist" 2>/dev/null && echo "-n 8")
    [ -n "$xdist" ] || serial=" (one at a time: no pytest-xdist)"
    GPUNN_TESTS_ONE_SIGINT=1 bounded "$cap" "$PY" -m pytest -q -m "gpu or cupy_api" -p no:cacheprovider $xdist \
      -o faulthandler_timeout=60 tests \
      --junitxml="$OUT/gpu_tests.xml" > "$OUT/gpu_tests.log" 2>&1
  fi
  rc=$?
  tail -n 15 "$OUT/gpu_tests.log"
  counts=$(grep -E "[0-9]+ (passed|failed|error)" "$OUT/gpu_tests.log" | tail -n 1)
  passed=$(echo "$counts" | grep -oE "[0-9]+ passed" | grep -oE "[0-9]+" || echo 0)
  if [ "$rc" -eq 124 ]; then ended "FAIL tests: timed out after ${cap}s${serial:-}: $counts"; failed=1
  elif [ "$rc" -ne 0 ]; then ended "FAIL tests (exit $rc): $counts"; failed=1
  elif [ "${passed:-0}" -eq 0 ]; then ended "FAIL tests: no GPU test passed (all skipped: CuPy unusable?): $counts"; failed=1
  else ended "ok   tests: $counts"; fi
fi

stage "kernel benchmarks"
cap=$(allow 45 $((RESERVE_TRAIN + RESERVE_HOOKS)))
sizes=20,24; repeat=30; [ "$DRY" = 1 ] && sizes=10,12 && repeat=3
if ! wants kernels; then not_asked kernels
elif [ "$cap" -eq 0 ]; then skip "kernels"; else
  bounded "$cap" "$PY" -m gpunn.bench.kernels --device "$DEVICE" --sizes "$sizes" --repeat "$repeat" \
    --json "$OUT/kernels.json" > "$OUT/kernels.txt" 2>&1
  rc=$?
  cat "$OUT/kernels.txt"
  outcome kernels "$rc" "$(grep -c 'copy at' "$OUT/kernels.txt") sizes in $OUT/kernels.txt, $OUT/kernels.json"
fi

stage "training benchmark"
# One interleaved run: gpunn float32 (the default: a CUDA graph) against PyTorch eager float32 and PyTorch
# bf16 autocast, plus the gpunn rows that `gpunn bench` offers (--precision float32,tf32,bf16 and --eager,
# issue 10's items 3-4), each option passed only when --help lists it.
help=""; wants train && help=$("$PY" -m gpunn bench --help 2>/dev/null)
args=(--device "$DEVICE" --config small --config medium --config deep --config large --peers torch,torch-bf16)
want=190
# the dry run: a cap of 60 s (30 s was passed at load ~10 on a 2-core machine, 2026-12-02); it ends when done
[ "$DRY" = 1 ] && args=(--device cpu --quick --peers naive) && want=60
echo "$help" | grep -q -- "--precision" && args+=(--precision float32,tf32,bf16)
echo "$help" | grep -q -- "--eager" && args+=(--eager)
# the chart needs matplotlib, which this machine need not have (gpunn bench refuses --plot without it)
wants train && "$PY" -c "import matplotlib" 2>/dev/null && args+=(--plot "$OUT/train.png")
cap=$(allow "$want" "$RESERVE_HOOKS")
if ! wants train; then not_asked train
elif [ "$cap" -eq 0 ]; then skip "train"; else
  # --max-seconds leaves the process 15% (at least 5 s) of its cap to start, write and exit
  budget=$((cap - (cap * 15 / 100 > 5 ? cap * 15 / 100 : 5)))
  echo "gpunn bench ${args[*]} --max-seconds $budget" > "$OUT/train.txt"
  bounded "$cap" "$PY" -m gpunn bench "${args[@]}" --max-seconds "$budget" --json "$OUT/train.json" \
    >> "$OUT/train.txt" 2>&1
  rc=$?
  tail -n 40 "$OUT/train.txt"
  # the default must have run as a CUDA graph on the GPU: a "graph" row that fell back says why in its note
  fell_back=$("$PY" -c "
import json, sys
rows = json.load(open(sys.argv[1]))['results']
print('; '.join(f\"{r['config']} {r['dtype']}: {r['note']}\" for r in rows if r.get('note', '').startswith('graph not captured')))
" "$OUT/train.json" 2>/dev/null)
  if [ "$rc" -eq 0 ] && [ -n "$fell_back" ]; then
    ended "FAIL train: the default CUDA graph was not captured: $fell_back"; failed=1
  else
    outcome train "$rc" "$OUT/train.txt, $OUT/train.json$(grep -o 'CUDA graph vs eager step.*' "$OUT/train.txt" | sed 's/^/; /')"
  fi
fi

stage "hooks (issues 10-13)"
later=$present
for hook in $HOOKS; do
  script="bench/gpu_checks/$hook.py"
  if ! wants "$hook"; then not_asked "$hook"; continue; fi
  if [ ! -f "$script" ]; then record "--   $hook: not landed ($script absent)"; continue; fi
  later=$((later - 1))
  wanted="GPUNN_CHECK_${hook^^}_SECONDS"
  cap=$(allow "${!wanted:-$HOOK_SECONDS}" $((later * 30)))
  if [ "$cap" -eq 0 ]; then skip "$hook"; continue; fi
  mkdir -p "$OUT/$hook"
  bounded $((cap + HOOK_SLACK)) "$PY" "$script" --device "$DEVICE" --out "$OUT/$hook" --max-seconds $((cap - 5)) \
    > "$OUT/$hook.txt" 2>&1
  rc=$?
  tail -n 10 "$OUT/$hook.txt"
  outcome "$hook" "$rc" "$OUT/$hook.txt"
done

stage "summary"
echo "gpu_check on $(head -n 1 "$OUT/device.txt"), $(date -u +%F), $((SECONDS - t0))s of a ${BUDGET}s budget: $([ "$failed" = 0 ] && echo PASSED || echo FAILED)" >> "$SUMMARY"
# the run as a bench/RESULTS.md section (what is read afterwards): a report that cannot be built fails the run
if ! "$PY" bench/gpu_report.py "$OUT" > "$OUT/report.md" 2> "$OUT/report.err"; then
  record "FAIL report: bench/gpu_report.py $OUT: $(tail -n 1 "$OUT/report.err")"; failed=1
fi
cat "$SUMMARY"
[ "$failed" -eq 0 ]
