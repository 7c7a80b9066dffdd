#!/usr/bin/env bash
# Every GPU number in benchmarks/RESULTS.md, in one command for one GPU session. PARTS picks what runs
# (default: loop,efficiency,first_stage):
#   loop         how fast the training loop and evaluate feed the GPU (train_step_speed.py; an estimated 150-200 s
#                on one H200, not yet run there): for each of LOOP_PRESETS (the `cpu` preset at batch 256, the paper-size `shapes3d` at
#                128), the loop at main e6c087c and now (loader workers with one BLAS and one torch thread,
#                torch.compile with CUDA graphs), in fp32 and bf16: images/s, host ms/step, ops/step and the
#                loader alone; and evaluate's encoding of the shipped `cpu`-preset model and of an untrained
#                `shapes3d` pipeline. Each preset stops starting measurements LOOP_SECONDS after its setup (a
#                compile already started finishes), in the order of LOOP_VARIANTS: before and after uncompiled,
#                then compiled in bf16 and fp32 (tens of seconds of compiling each), then the rest (last: compiled
#                without CUDA graphs, which runs only if time is left, e.g. when the CUDA-graph variants failed).
#   efficiency   the faithful `shapes3d` preset end to end (train_efficiency.py): stage 1 (the VQ first stage,
#                VAE_STEPS steps), then EncDiff with the released recipe for TRAIN_MINUTES minutes, then the
#                beta-VAE and beta-TCVAE baselines on the same images, all scored by the same metrics;
#   first_stage  stage 1's reconstruction PSNR on held-out images, with a picture (first_stage_quality.py).
# Results (JSON) go to RESULTS_DIR (default benchmarks/results); logs beside them. Nothing needs the network.
#
#   bash benchmarks/gpu_benchmarks.sh                                   # one CUDA GPU, everything
#   PARTS=loop RESULTS_DIR=$OUT bash benchmarks/gpu_benchmarks.sh       # the loop alone (150-200 s)
#   TRAIN_MINUTES=4 VAE_STEPS=3000 RESULTS_DIR=$OUT bash benchmarks/gpu_benchmarks.sh
#   DEVICE=cpu PRESET=tiny TRAIN_MINUTES=0.1 VAE_STEPS=4 LOOP_PRESETS=tiny:8:tiny LOOP_STEPS=2 LOOP_VARIANTS=e6c087c,after \
#       BATCH_SIZE=8 MIXED_PRECISION=no WORKERS=0 bash benchmarks/gpu_benchmarks.sh   # the CPU smoke test (tests/)
#
# The code measured is this checkout's (src/ comes first on PYTHONPATH). A machine without network access
# needs the dependencies' wheels beforehand: any *.whl in WHEEL_DIR (default outputs/whl) is installed
# without dependencies when the package does not import.
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS_DIR=${RESULTS_DIR:-benchmarks/results}
PARTS=${PARTS:-loop,efficiency,first_stage}
DEVICE=${DEVICE:-cuda}
PRESET=${PRESET:-shapes3d}
TRAIN_MINUTES=${TRAIN_MINUTES:-5}
VAE_STEPS=${VAE_STEPS:-3000}
SEEDS=${SEEDS:-0}
BATCH_SIZE=${BATCH_SIZE:-128}
WORKERS=${WORKERS:-12}
MIXED_PRECISION=${MIXED_PRECISION:-bf16}
LOOP_PRESETS=${LOOP_PRESETS:-cpu:256:examples/models/encdiff-shapes3d-procedural shapes3d:128:shapes3d}
LOOP_VARIANTS=${LOOP_VARIANTS:-e6c087c,after,after + compile + bf16,after + compile,after + bf16,e6c087c + bf16,after + compile (no CUDA graphs) + bf16}
LOOP_STEPS=${LOOP_STEPS:-20}
LOOP_ROUNDS=${LOOP_ROUNDS:-2}
LOOP_PHASE_STEPS=${LOOP_PHASE_STEPS:-5}
LOOP_SECONDS=${LOOP_SECONDS:-50}
ENCODE_IMAGES=${ENCODE_IMAGES:-50000}
WORK_DIR=${WORK_DIR:-outputs/gpu_benchmarks}
WHEEL_DIR=${WHEEL_DIR:-outputs/whl}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
mkdir -p "$RESULTS_DIR"
suffix=$([ "$DEVICE" = cuda ] && echo gpu || echo "$DEVICE-$PRESET")

if ! python -c "import concept_diffusion" 2>/dev/null && compgen -G "$WHEEL_DIR/*.whl" >/dev/null; then
    python -m pip install --quiet --no-deps "$WHEEL_DIR"/*.whl
fi
python -c "import concept_diffusion, torch, threadpoolctl, os; print('concept_diffusion from', concept_diffusion.__file__, '| torch', torch.__version__, '|', torch.get_num_threads(), 'torch threads on', len(os.sched_getaffinity(0)), 'cores |', '; '.join(f\"{lib['internal_api']} {lib['num_threads']} threads\" for lib in threadpoolctl.threadpool_info()))"
echo "thread environment: OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset} MKL_NUM_THREADS=${MKL_NUM_THREADS:-unset} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-unset}"
if [ "$DEVICE" = cuda ]; then
    python -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU visible'; print(torch.cuda.get_device_name(0), torch.__version__)"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi

if [[ ",$PARTS," == *",loop,"* ]]; then
    for entry in $LOOP_PRESETS; do
        IFS=: read -r preset batch encode_model <<<"$entry"
        name="train_step_speed_${DEVICE/cuda/gpu}_$preset"
        echo "== loop: $preset, batch $batch, $WORKERS workers, evaluate's encoding with $encode_model"
        python benchmarks/train_step_speed.py --preset "$preset" --device "$DEVICE" --num-workers "$WORKERS" \
            --batch-size "$batch" --steps "$LOOP_STEPS" --rounds "$LOOP_ROUNDS" --phase-steps "$LOOP_PHASE_STEPS" \
            --variants "$LOOP_VARIANTS" --encode-model "$encode_model" --encode-images "$ENCODE_IMAGES" \
            --max-seconds "$LOOP_SECONDS" --out "$RESULTS_DIR/$name.json" \
            2>"$RESULTS_DIR/$name.progress.log" | tee "$RESULTS_DIR/$name.log" \
            || echo "loop: $preset FAILED (rc $?): see $RESULTS_DIR/$name.progress.log"  # the other presets still run
    done
fi

if [[ ",$PARTS," == *",efficiency,"* ]]; then
    python benchmarks/train_efficiency.py --preset "$PRESET" --device "$DEVICE" --minutes "$TRAIN_MINUTES" \
        --vae-steps "$VAE_STEPS" --batch-size "$BATCH_SIZE" --eval-every 1000 --eval-samples 1000 \
        --num-workers "$WORKERS" --mixed-precision "$MIXED_PRECISION" --seeds "$SEEDS" \
        --work-dir "$WORK_DIR" --out "$RESULTS_DIR/train_efficiency_$suffix.json" \
        2>"$RESULTS_DIR/train_efficiency_$suffix.progress.log" | tee "$RESULTS_DIR/train_efficiency_$suffix.log"
fi

if [[ ",$PARTS," == *",first_stage,"* ]] && [ -f "$WORK_DIR/vae/vae/config.json" ]; then
    python benchmarks/first_stage_quality.py "$WORK_DIR/vae/vae" --data shapes3d-procedural \
        --out "$RESULTS_DIR/first_stage_quality_$suffix.json" | tee "$RESULTS_DIR/first_stage_quality_$suffix.log"
fi
