#!/usr/bin/env bash
# The GPU path of mmrl-bench, checked end to end on one machine with a CUDA GPU (docs/gpu.md):
#   1. the requirements, installed from a folder of wheels when the machine has no index (--wheels DIR);
#   2. `bench run` through the CLI with trainer=gpu-zero2 (bf16 + ZeRO-2) and with trainer=cpu (the CPU settings a
#      GPU suite falls back to), each to exit 0;
#   3. every training method on digits-poly5 with an fp32 reference trainer, trainer=gpu-zero1 and trainer=gpu-zero2:
#      finite losses within --rtol of fp32's, the test probe, and `bench perf train` bare vs engine samples/s;
#   4. the training FLOPs per sample of the paper suite's models and, for the largest, samples/s through the
#      engine against the card's bf16 roofline;
#   5. every stored record whose spec says device=cuda was trained where a GPU was seen.
# Results: OUT/gpu_check.md (the tables) and OUT/gpu_check.json; OUT/results is the run store.
# Exit status: 0 every check held; 1 a check failed (named on stderr); 2 bad input, no GPU, or missing packages.
set -uo pipefail

usage() {
    cat <<'EOF'
usage: scripts/gpu_check.sh [--wheels DIR] [--out DIR] [--epochs N] [--repeats N] [--rtol X]
                            [--methods "m1 m2 ..."] [--root DIR] [--peak-tflops X] [--skip STEP ...]
  --wheels DIR     install missing requirements from DIR only (pip --no-index --find-links DIR)
  --out DIR        where the results go (default: results/gpu-check)
  --epochs N       epochs of each table run (default 1)
  --repeats N      epochs timed per trainer by bench perf train (default 3)
  --rtol X         largest relative gap of a bf16 loss to the fp32 reference's (default 0.05)
  --methods "..."  the methods of the table (default: every registered method that trains)
  --root DIR       paper data root: lets the FLOP count include the benchmarks whose shapes need data
  --peak-tflops X  the card's dense bf16 peak, where the script's datasheet table lacks the card
  --skip STEP      leave out a step: cli, table, roofline (repeatable)
environment: PYTHON (default python3)
EOF
}

die() {  # one line on stderr, then the exit status
    echo "gpu_check: $1" >&2
    exit "${2:-2}"
}

PY=${PYTHON:-python3}
OPTIONS="--wheels --out --epochs --repeats --rtol --methods --root --peak-tflops --skip"
WHEELS="" OUT="results/gpu-check" EPOCHS=1 REPEATS=3 RTOL=0.05 METHODS="" ROOT_DIR="" PEAK="" SKIP=" "
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --wheels|--out|--epochs|--repeats|--rtol|--methods|--root|--peak-tflops|--skip)
            [ $# -ge 2 ] || die "$1 needs a value; see --help"
            case "$1" in
                --wheels) WHEELS=$2 ;;
                --out) OUT=$2 ;;
                --epochs) EPOCHS=$2 ;;
                --repeats) REPEATS=$2 ;;
                --rtol) RTOL=$2 ;;
                --methods) METHODS=$2 ;;
                --root) ROOT_DIR=$2 ;;
                --peak-tflops) PEAK=$2 ;;
                --skip)
                    case "$2" in cli|table|roofline) SKIP="$SKIP$2 " ;;
                        *) die "unknown step '$2' for --skip; valid: cli, table, roofline" ;; esac ;;
            esac
            shift 2 ;;
        *) die "unknown option '$1'; valid: $OPTIONS --help" ;;
    esac
done
for n in "$EPOCHS" "$REPEATS"; do
    case "$n" in ''|*[!0-9]*|0) die "--epochs and --repeats take a whole number >= 1, got '$n'" ;; esac
done
[ -z "$WHEELS" ] || [ -d "$WHEELS" ] || die "--wheels $WHEELS is not a folder"
absolute() {  # the folders given are the caller's: keep them once the script moves to the repository root
    case "$1" in ''|/*) printf '%s' "$1" ;; *) printf '%s/%s' "$PWD" "$1" ;; esac
}
WHEELS=$(absolute "$WHEELS") OUT=$(absolute "$OUT") ROOT_DIR=$(absolute "$ROOT_DIR")

cd "$(dirname "$0")/.." || die "cannot enter the repository root"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's bench, also when another copy is installed
export PYTHONUNBUFFERED=1

# --- 1. a GPU, then the requirements ------------------------------------------------------------------------------
"$PY" -c 'import torch' 2>/dev/null || die "$PY cannot import torch; install a CUDA build of torch first"
"$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' \
    || die "no GPU is visible to torch (torch.cuda.is_available() is False); run this on a machine with a CUDA GPU"
mapfile -t MISSING < <("$PY" scripts/gpu_check.py missing)
if [ "${#MISSING[@]}" -gt 0 ]; then
    [ -n "$WHEELS" ] || die "missing requirements: ${MISSING[*]}; install them, or pass --wheels DIR (docs/gpu.md)"
    echo "installing from $WHEELS: ${MISSING[*]}"
    "$PY" -m pip install --no-index --find-links "$WHEELS" "${MISSING[@]}" \
        || die "pip could not install ${MISSING[*]} from $WHEELS alone (a wheel missing there is named above)"
fi
mkdir -p "$OUT" || die "cannot create $OUT"
: > "$OUT/gpu_check.md"
rm -f "$OUT/gpu_check.json"
"$PY" - "$OUT/gpu_check.md" <<'EOF'
import sys, torch
with open(sys.argv[1], "a") as f:
    f.write(f"# GPU check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}\n")
EOF

FAILED=()
step() {  # step NAME COMMAND...: run, and remember a failure without stopping the other steps
    local name=$1
    shift
    echo "== $name"
    "$@" || FAILED+=("$name")
}

# --- 2. the CLI: a GPU trainer, and the CPU settings on a GPU machine ---------------------------------------------
if [[ $SKIP != *" cli "* ]]; then
    for trainer in gpu-zero2 cpu; do
        step "bench run trainer=$trainer" "$PY" -m bench run method=mvae benchmark=bc-3view "trainer=$trainer" \
            trainer.epochs=1 trainer.progress=false "eval.metrics=[probe_linear]" --force --results "$OUT/results"
    done
fi

# --- 3. methods x trainers on digits-poly5 ------------------------------------------------------------------------
if [[ $SKIP != *" table "* ]]; then
    table=(--out "$OUT" --epochs "$EPOCHS" --repeats "$REPEATS" --rtol "$RTOL")
    if [ -n "$METHODS" ]; then
        read -r -a names <<<"$METHODS"
        table+=(--methods "${names[@]}")
    fi
    step "table" "$PY" scripts/gpu_check.py table "${table[@]}"
fi

# --- 4. FLOPs per sample and the roofline -------------------------------------------------------------------------
if [[ $SKIP != *" roofline "* ]]; then
    data=()
    [ -z "$ROOT_DIR" ] || data=(--root "$ROOT_DIR")
    peak=()
    [ -z "$PEAK" ] || peak=(--peak-tflops "$PEAK")
    # ${a[@]+"${a[@]}"}: an empty array expands to nothing under set -u, also in bash before 4.4
    step "flops" "$PY" scripts/gpu_check.py flops --out "$OUT" ${data[@]+"${data[@]}"}
    step "roofline" "$PY" scripts/gpu_check.py roofline --out "$OUT" ${data[@]+"${data[@]}"} ${peak[@]+"${peak[@]}"}
fi

# --- 5. no record claims a GPU it did not have --------------------------------------------------------------------
if [ -d "$OUT/results/runs" ]; then
    step "records" "$PY" scripts/gpu_check.py records --out "$OUT"
fi

cat "$OUT/gpu_check.md"
if [ "${#FAILED[@]}" -gt 0 ]; then
    die "failed: ${FAILED[*]} (details above and in $OUT/gpu_check.md)" 1
fi
echo "gpu_check: every check held; tables in $OUT/gpu_check.md"
