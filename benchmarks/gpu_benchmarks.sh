#!/usr/bin/env bash
# Every GPU number in benchmarks/RESULTS.md, in one command for one GPU session:
#   1. where a training step of the paper-size model spends its time, in images/s per phase
#      (train_step_speed.py: data, forward, backward, optimizer, EMA), and the loop's images/s with
#      TF32, bf16 autocast, channels_last and torch.compile (STEP_SPEED_VARIANTS, default all);
#   2. the faithful `shapes3d` preset end to end (train_efficiency.py): stage 1 (the VQ first stage,
#      VAE_STEPS steps), then EncDiff with the released recipe for TRAIN_MINUTES minutes, then the
#      beta-VAE and beta-TCVAE baselines on the same images, all scored by the same metrics;
#   3. stage 1's reconstruction PSNR on held-out images, with a picture (first_stage_quality.py).
# Results go to RESULTS_DIR (default benchmarks/results); logs beside them.
#
#   bash benchmarks/gpu_benchmarks.sh                                   # one CUDA GPU
#   TRAIN_MINUTES=4 VAE_STEPS=3000 RESULTS_DIR=$OUT bash benchmarks/gpu_benchmarks.sh
#   DEVICE=cpu PRESET=tiny TRAIN_MINUTES=0.1 VAE_STEPS=4 STEP_SPEED_STEPS=2 STEP_SPEED_VARIANTS=before,after \
#       BATCH_SIZE=8 MIXED_PRECISION=no WORKERS=0 bash benchmarks/gpu_benchmarks.sh   # the CPU smoke test (tests/)
#
# A machine without network access needs the package's wheels beforehand: any *.whl in
# WHEEL_DIR (default outputs/whl) is installed without dependencies first.
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS_DIR=${RESULTS_DIR:-benchmarks/results}
DEVICE=${DEVICE:-cuda}
PRESET=${PRESET:-shapes3d}
TRAIN_MINUTES=${TRAIN_MINUTES:-5}
VAE_STEPS=${VAE_STEPS:-3000}
SEEDS=${SEEDS:-0}
BATCH_SIZE=${BATCH_SIZE:-128}
WORKERS=${WORKERS:-12}
MIXED_PRECISION=${MIXED_PRECISION:-bf16}
STEP_SPEED_STEPS=${STEP_SPEED_STEPS:-50}
STEP_SPEED_VARIANTS=${STEP_SPEED_VARIANTS:-before,after,after + TF32,after + TF32 + bf16,after + TF32 + bf16 + channels_last,after + TF32 + bf16 + torch.compile}
WORK_DIR=${WORK_DIR:-outputs/gpu_benchmarks}
WHEEL_DIR=${WHEEL_DIR:-outputs/whl}
mkdir -p "$RESULTS_DIR"
suffix=$([ "$DEVICE" = cuda ] && echo gpu || echo "$DEVICE-$PRESET")

if ! python -c "import concept_diffusion" 2>/dev/null; then
    if compgen -G "$WHEEL_DIR/*.whl" >/dev/null; then
        python -m pip install --quiet --no-deps "$WHEEL_DIR"/*.whl
    fi
    python -m pip install --quiet --no-deps --no-build-isolation -e .
fi
if [ "$DEVICE" = cuda ]; then
    python -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU visible'; print(torch.cuda.get_device_name(0), torch.__version__)"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi

python benchmarks/train_step_speed.py --preset "$PRESET" --device "$DEVICE" --num-workers "$WORKERS" \
    --batch-size "$BATCH_SIZE" --steps "$STEP_SPEED_STEPS" --rounds 3 --variants "$STEP_SPEED_VARIANTS" \
    --out "$RESULTS_DIR/train_step_speed_$suffix.json" 2>"$RESULTS_DIR/train_step_speed_$suffix.progress.log" \
    | tee "$RESULTS_DIR/train_step_speed_$suffix.log"

python benchmarks/train_efficiency.py --preset "$PRESET" --device "$DEVICE" --minutes "$TRAIN_MINUTES" \
    --vae-steps "$VAE_STEPS" --batch-size "$BATCH_SIZE" --eval-every 1000 --eval-samples 1000 \
    --num-workers "$WORKERS" --mixed-precision "$MIXED_PRECISION" --seeds "$SEEDS" \
    --work-dir "$WORK_DIR" --out "$RESULTS_DIR/train_efficiency_$suffix.json" \
    2>"$RESULTS_DIR/train_efficiency_$suffix.progress.log" | tee "$RESULTS_DIR/train_efficiency_$suffix.log"

if [ -f "$WORK_DIR/vae/vae/config.json" ]; then
    python benchmarks/first_stage_quality.py "$WORK_DIR/vae/vae" --data shapes3d-procedural \
        --out "$RESULTS_DIR/first_stage_quality_$suffix.json" | tee "$RESULTS_DIR/first_stage_quality_$suffix.log"
fi
