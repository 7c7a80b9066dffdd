#!/usr/bin/env bash
# Every GPU number in benchmarks/RESULTS.md, in one command for one GPU session:
#   1. where a training step spends its time, and the loop's images/s before and after the
#      2026-11-27 changes (train_step_speed.py, shapes3d preset, batch 64);
#   2. the training-efficiency curves of EncDiff (shapes3d preset, 64x64, bf16) and both baselines
#      for TRAIN_MINUTES minutes of EncDiff training (train_efficiency.py).
# Results go to RESULTS_DIR (default benchmarks/results); logs beside them.
#
#   bash benchmarks/gpu_benchmarks.sh                       # on a machine with a CUDA GPU
#   TRAIN_MINUTES=8 SEEDS=0,1 RESULTS_DIR=$OUT bash benchmarks/gpu_benchmarks.sh
#
# A machine without network access needs the package's wheels beforehand: any *.whl in
# WHEEL_DIR (default outputs/whl) is installed without dependencies first.
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS_DIR=${RESULTS_DIR:-benchmarks/results}
TRAIN_MINUTES=${TRAIN_MINUTES:-8}
SEEDS=${SEEDS:-0}
WHEEL_DIR=${WHEEL_DIR:-outputs/whl}
mkdir -p "$RESULTS_DIR"

if ! python -c "import concept_diffusion" 2>/dev/null; then
    if compgen -G "$WHEEL_DIR/*.whl" >/dev/null; then
        python -m pip install --quiet --no-deps "$WHEEL_DIR"/*.whl
    fi
    python -m pip install --quiet --no-deps --no-build-isolation -e .
fi
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU visible'; print(torch.cuda.get_device_name(0), torch.__version__)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

python benchmarks/train_step_speed.py --preset shapes3d --device cuda --num-workers 8 --steps 100 \
    --out "$RESULTS_DIR/train_step_speed_gpu.json" 2>"$RESULTS_DIR/train_step_speed_gpu.progress.log" \
    | tee "$RESULTS_DIR/train_step_speed_gpu.log"

python benchmarks/train_efficiency.py --preset shapes3d --device cuda --minutes "$TRAIN_MINUTES" --vae-steps 1000 \
    --batch-size 64 --eval-every 1000 --eval-samples 1000 --num-workers 8 --mixed-precision bf16 --seeds "$SEEDS" \
    --work-dir outputs/train_efficiency_gpu --out "$RESULTS_DIR/train_efficiency_gpu.json" \
    2>"$RESULTS_DIR/train_efficiency_gpu.progress.log" | tee "$RESULTS_DIR/train_efficiency_gpu.log"
