#!/usr/bin/env bash
# The GPU path, checked and measured on a machine with a CUDA GPU, in one run:
#
#     bash bench/device_check.sh [OUTDIR]        # default: $OUT when set, else bench-device/
#     bash bench/device_check.sh --rehearse DIR  # the same steps on the CPU, small: check the
#                                                # script before a GPU machine's minutes are spent
#
# Runs with the machine's own python3 (PYTHON=... to choose another), which needs torch with
# CUDA, numpy, pandas, pyarrow, scikit-learn, PyYAML, tqdm, pytest and hypothesis; not MLflow or
# DVC. Nothing is downloaded: the 1M rows are generated here. Writes under OUTDIR:
#   env.log      the GPU, driver, torch and CPU
#   tests.log    tests/test_train.py on this machine: its cuda cases (the fused optimizer against
#                torch.optim, the sweep against the loop for every loss, training's promises) run
#   sweep.log    python -m bench.sweep --device cuda at batch 64 and at batch auto for 1M rows
#   scale.log    prepare, weights and plan on 1M synthetic rows, then every loss's sweep on cuda
#   scale.json   bench.device_train's figures per model
#   default.log  every loss's sweep on the default data (the bundled digits) on cuda and on the
#                CPU, side by side: what a GPU changes in the models kept
# Each step has a time limit of its own; the script exits 1 if any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
device=cuda rows=1000000 sweep_rows=(100000 540000)
if [ "${1:-}" = --rehearse ]; then
    device=cpu rows=20000 sweep_rows=(5000 10000)
    shift
fi
out=${1:-${OUT:-bench-device}}
mkdir -p "$out"
out=$(cd "$out" && pwd)
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
failed=()

step() {  # step NAME LOG LIMIT_S COMMAND...: run, append to LOG, note a failure
    local name=$1 log=$2 limit=$3 start rc
    shift 3
    start=$(date +%s)
    echo "== $name: $*" | tee -a "$log"
    timeout -k 10 "$limit" "$@" >>"$log" 2>&1
    rc=$?
    echo "== $name: exit $rc after $(( $(date +%s) - start )) s" | tee -a "$log"
    [ "$rc" = 0 ] || failed+=("$name")
}

{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
    "$py" -c 'import torch, platform; print("python", platform.python_version(), "torch", torch.__version__,
        "cuda", torch.version.cuda, "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)'
    grep -m1 "model name" /proc/cpuinfo; nproc
} >"$out/env.log" 2>&1
cat "$out/env.log"
if [ "$device" = cuda ] && ! "$py" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())'; then
    echo "torch sees no CUDA device here: nothing to check" >&2
    exit 1
fi

step tests "$out/tests.log" 240 "$py" -m pytest -q -p no:cacheprovider tests/test_train.py

# the batched sweep against the loop: at batch 64 (100 000 rows), and at the batch that
# batch_size: auto picks for 1M prepared rows (about 540 000 rows to fit on: 8192 on a GPU)
step "sweep-64" "$out/sweep.log" 150 "$py" -m bench.sweep --device "$device" --batch 64 --n "${sweep_rows[0]}" --epochs 1
step "sweep-auto" "$out/sweep.log" 150 "$py" -m bench.sweep --device "$device" --batch auto --n "${sweep_rows[1]}" --epochs 3

# every loss's sweep on 1M prepared synthetic rows, the default parameters otherwise
work=$(mktemp -d)
"$py" - "$work/params.yaml" "$rows" <<'EOF'
import sys, yaml
params = yaml.safe_load(open("params.yaml"))
params["data"]["source"] = "synthetic"
params["data"]["synthetic"]["n_samples"] = int(sys.argv[2])
yaml.safe_dump(params, open(sys.argv[1], "w"), sort_keys=False)
EOF
p=(--params "$work/params.yaml")
step prepare "$out/scale.log" 180 "$py" -m stages.prepare "${p[@]}" --out "$work/prepared"
step weights "$out/scale.log" 60 "$py" -m stages.weights "${p[@]}" --meta "$work/prepared/meta.json" \
    --out "$work/class_weights.json"
step plan "$out/scale.log" 60 "$py" -m stages.plan "${p[@]}" --weights "$work/class_weights.json" --out "$work/plans"
step train "$out/scale.log" 420 "$py" -m bench.device_train --prepared "$work/prepared" --plans "$work/plans" \
    --devices "$device" --out "$out/scale.json"
rm -rf "$work"

# the default data on both devices: epochs kept and validation macro-F1, GPU against CPU
work=$(mktemp -d)
step "default-prepare" "$out/default.log" 120 "$py" -m stages.prepare --out "$work/prepared"
step "default-weights" "$out/default.log" 60 "$py" -m stages.weights --meta "$work/prepared/meta.json" \
    --out "$work/class_weights.json"
step "default-plan" "$out/default.log" 60 "$py" -m stages.plan --weights "$work/class_weights.json" --out "$work/plans"
step "default-train" "$out/default.log" 240 "$py" -m bench.device_train --prepared "$work/prepared" \
    --plans "$work/plans" --devices "$device" cpu
rm -rf "$work"

if [ ${#failed[@]} -gt 0 ]; then
    echo "device check: FAILED: ${failed[*]} (logs in $out)"
    exit 1
fi
echo "device check: every step passed (logs in $out)"
