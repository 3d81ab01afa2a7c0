#!/usr/bin/env bash
# The GPU check (under 8 minutes on one GPU), one summary line per check:
#   1. bench/gpu_training.py: ResNet-18 at 224 px, linear and ARM heads, bf16, channels_last,
#      without and with torch.compile: images/s and peak memory;
#   2. bench/loader.py on the GPU: delivery, data-wait share, batched augmentation;
#   3. the DCJT pipeline end to end on the synthetic world at 224 px, --backbone resnet18
#      --head arm, on CUDA, with DCJT_DEVICE_CHECK=cuda: any parameter, buffer or batch tensor
#      of a training step or a prediction that is not on the GPU stops it.
# --dry-run: the same three, small, on the CPU (the test suite runs this).
# Runs with the checkout's .venv (bash scripts/setup.sh) or, in the GPU image, its python; PYTHON overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
default_py=python
[ -x .venv/bin/python ] && default_py=.venv/bin/python   # this checkout's venv; in the GPU image, its PATH python
PY=${PYTHON:-$default_py}
dry=0
[ "${1:-}" = "--dry-run" ] && dry=1
export GX_ANALYTICS_ENABLED=false ZENML_ANALYTICS_OPT_IN=false DCJT_OFFLINE=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export DCJT_HOME="$work/home"   # a fresh ZenML store and MLflow database: nothing cached, nothing kept,
unset MLFLOW_TRACKING_URI ZENML_CONFIG_PATH ZENML_STORE_URL  # and no model registered in the user's stores

if [ "$dry" = 1 ]; then
  device=cpu; training=(--dry-run); loader=(--device cpu --images 256 --epochs 1)
  world=(--set network.image_size=96 --set data.world.n_target=120 --set data.world.n_extra=240
         --set m_a.epochs=1 --set m_b.epochs=1 --set dcn.epochs=2 --set dcn.batch_size=16
         --set m_a.batch_size=16 --set m_b.batch_size=16 --set gates.min_val_rows=8)  # a rehearsal: 10 validation rows
else
  if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA device (run with --dry-run for the CPU rehearsal)" >&2
    exit 1
  fi
  device=cuda; training=(); loader=(--device cuda)
  world=(--set network.image_size=224 --set data.world.n_target=1000 --set data.world.n_extra=2000
         --set m_a.epochs=2 --set m_b.epochs=2 --set dcn.epochs=3)
fi

run_check() {  # name, command...: run, keep the log, print the command's last line as the summary
  local name=$1; shift
  local t0=$SECONDS
  if "$@" >"$work/$name.log" 2>&1; then
    echo "gpu_check $name: $(tail -n 1 "$work/$name.log") ($((SECONDS - t0)) s)"
  else
    echo "gpu_check $name: FAILED after $((SECONDS - t0)) s; last lines:"
    tail -n 25 "$work/$name.log" | sed 's/^/  /'
    return 1
  fi
}

status=0
run_check training "$PY" bench/gpu_training.py "${training[@]}" || status=1
grep '^torch \|^gpu_training \|compile speed-up' "$work/training.log" || true   # versions first
run_check loader "$PY" bench/loader.py "${loader[@]}" || status=1
grep '^(' "$work/loader.log" || true
run_check pipeline env DCJT_DEVICE_CHECK=$device "$PY" run.py pipeline --config demo \
  --backbone resnet18 --head arm --weights none "${world[@]}" \
  --set dcn.warmup_epochs=1 --set dcn.joint_frequency=1 --set 'baselines=[]' --set gates.mode=warn || status=1
grep -E '^ +dcjt |^Accuracy|pipeline wall time' "$work/pipeline.log" || true
echo "gpu_check: $([ $status = 0 ] && echo passed || echo FAILED) on $device"
exit $status
