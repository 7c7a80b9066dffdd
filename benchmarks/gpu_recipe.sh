#!/usr/bin/env bash
# The object-factor study on one GPU, in one call (see benchmarks/RESULTS.md, "Object factors"):
#   1. every arm of cpu_ablation.py (ARMS) with two seeds, all at once on the one GPU, batch 32 as on the CPU,
#      each for at most MINUTES, with the trainer's fast FactorVAE / DCI and per-factor accuracy every EVAL_IMAGES
#      images (the curves that compare the arms at equal images);
#   2. beside them, the latent arm (its small first stage first, then its two seeds), the oracle decoder
#      (oracle_decoder.py) and the candidate recipes (LONG_ARMS, LONG_SEEDS) at batch LONG_BATCH to LONG_IMAGES
#      images: the paper's budget;
#   3. the run folders packed into RESULTS_DIR/recipe_runs.tar (logs, final concept encoders, whole pipelines of the
#      long runs), to be scored with the exact metrics elsewhere (`cpu_ablation.py` with the same arguments, without
#      --no-score, on the unpacked folders).
#
#   RESULTS_DIR=$OUT bash benchmarks/gpu_recipe.sh
#   DEVICE=cpu ARMS=base SEEDS=0 LATENT_ARM= IMAGES=64 LONG_ARMS=skip_dropout LONG_IMAGES=64 LONG_BATCH=32 EVAL_IMAGES=1000000 \
#       EVAL_SAMPLES=64 ORACLE_IMAGES=64 ORACLE_PROBE_IMAGES=64 ORACLE_TEST=4 bash benchmarks/gpu_recipe.sh   # CPU smoke (tests/)
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS_DIR=${RESULTS_DIR:-outputs/gpu_recipe_results}
WORK_DIR=${WORK_DIR:-outputs/gpu_recipe}
DEVICE=${DEVICE:-cuda}
ARMS=${ARMS:-base,skip_dropout,adagn,edge_loss_x10,pixels_64x64,concepts_20}
LATENT_ARM=${LATENT_ARM-latent_64x64}
SEEDS=${SEEDS:-0,1}
IMAGES=${IMAGES:-1000000}
MINUTES=${MINUTES:-5}
EVAL_IMAGES=${EVAL_IMAGES:-50000}
EVAL_SAMPLES=${EVAL_SAMPLES:-2000}
FIRST_STAGE_MINUTES=${FIRST_STAGE_MINUTES:-1.5}
ORACLE_IMAGES=${ORACLE_IMAGES:-300000}
ORACLE_PROBE_IMAGES=${ORACLE_PROBE_IMAGES:-100000}
ORACLE_TEST=${ORACLE_TEST:-500}
LONG_ARMS=${LONG_ARMS:-edge_loss_x10_t_mean_2_grad_x100,edge_loss_x10_t_mean_2_grad_x300,edge_loss_x10_t_mean_2}
LONG_SEEDS=${LONG_SEEDS:-0}
LONG_BATCH=${LONG_BATCH:-128}
LONG_IMAGES=${LONG_IMAGES:-1500000}
LONG_EVAL_IMAGES=${LONG_EVAL_IMAGES:-250000}
mkdir -p "$RESULTS_DIR" "$WORK_DIR"
if [ "$DEVICE" = cuda ]; then
    python -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU visible'; print(torch.cuda.get_device_name(0), torch.__version__)"
fi
IFS=, read -ra arm_list <<<"$ARMS"
IFS=, read -ra seed_list <<<"$SEEDS"
parallel=$(( ${#arm_list[@]} * ${#seed_list[@]} ))
steps() { echo $(( $1 / $2 )); }
pack_runs() {  # work folder, tar path: logs, run.json, concept encoders, the long runs' whole pipelines
    tar -cf "$2" -C "$1" --exclude='checkpoints' --exclude='logs' --exclude='arms/*/pipeline/unet' --exclude='*/presets' \
        --exclude='*/samples/swap_0*' .
}
if [ "${1:-}" = --pack-only ]; then  # what a session that stopped this script does (gpu_session.sh)
    mkdir -p "$RESULTS_DIR" && pack_runs "$WORK_DIR" "$RESULTS_DIR/recipe_runs.tar"
    exit
fi
on_core() { taskset -c "$(( $1 % $(nproc) ))" env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "${@:2}"; }
started=$(date +%s)

# 1. The arms at batch 32, cores 0 .. parallel-1.
python benchmarks/cpu_ablation.py --arms "$ARMS" --seeds "$SEEDS" --images "$IMAGES" --parallel "$parallel" \
    --eval-every "$(steps "$EVAL_IMAGES" 32)" --eval-samples "$EVAL_SAMPLES" --max-minutes "$MINUTES" --no-score \
    --work-dir "$WORK_DIR/arms" >"$RESULTS_DIR/arms.log" 2>&1 &
pids=($!)
core=$parallel
# 2. Beside them: the latent arm (first stage first), the oracle decoder and the long runs, each on its own cores.
if [ -n "$LATENT_ARM" ]; then
    python benchmarks/cpu_ablation.py --arms "$LATENT_ARM" --seeds "$SEEDS" --images "$IMAGES" --parallel "${#seed_list[@]}" \
        --first-core "$core" --first-stage-minutes "$FIRST_STAGE_MINUTES" --eval-every "$(steps "$EVAL_IMAGES" 32)" \
        --eval-samples "$EVAL_SAMPLES" --max-minutes "$(python -c "print(max($MINUTES - $FIRST_STAGE_MINUTES - 0.4, 0.1))")" \
        --no-score --work-dir "$WORK_DIR/arms" \
        >"$RESULTS_DIR/latent.log" 2>&1 &
    pids+=($!)
    core=$(( core + ${#seed_list[@]} ))
fi
on_core "$core" python benchmarks/oracle_decoder.py --images "$ORACLE_IMAGES" --probe-images "$ORACLE_PROBE_IMAGES" --test "$ORACLE_TEST" \
    --max-minutes "$(python -c "print(max($MINUTES - 1, 0.1))")" --out "$RESULTS_DIR/oracle_decoder.json" >"$RESULTS_DIR/oracle_decoder.log" 2>&1 &
pids+=($!)
core=$(( core + 1 ))
IFS=, read -ra long_list <<<"$LONG_ARMS"
IFS=, read -ra long_seed_list <<<"$LONG_SEEDS"
python benchmarks/cpu_ablation.py --arms "$LONG_ARMS" --seeds "$LONG_SEEDS" --images "$LONG_IMAGES" --batch-size "$LONG_BATCH" \
    --parallel "$(( ${#long_list[@]} * ${#long_seed_list[@]} ))" --first-core "$core" \
    --eval-every "$(steps "$LONG_EVAL_IMAGES" "$LONG_BATCH")" --eval-samples "$EVAL_SAMPLES" --max-minutes "$MINUTES" --no-score \
    --work-dir "$WORK_DIR/long" >"$RESULTS_DIR/long.log" 2>&1 &
pids+=($!)
core=$(( core + ${#long_list[@]} * ${#long_seed_list[@]} ))
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
echo "trained in $(( $(date +%s) - started )) s on $core cores (exit $status)"
if [ -f "$WORK_DIR/arms/first_stage/vae/config.json" ]; then
    python benchmarks/first_stage_quality.py "$WORK_DIR/arms/first_stage/vae" --data shapes3d-procedural \
        --out "$RESULTS_DIR/first_stage_quality_gpu.json" >"$RESULTS_DIR/first_stage_quality.log" 2>&1 || status=$?
fi

# 3. Pack what scoring and the curves need (checkpoints stay behind: optimizer states are most of their size).
pack_runs "$WORK_DIR" "$RESULTS_DIR/recipe_runs.tar"
ls -la "$RESULTS_DIR"
exit $status
