#!/usr/bin/env bash
# One GPU session's measurements in one command, each part under a time limit:
#   1. the training loop and evaluate feeding the GPU (gpu_benchmarks.sh, PARTS=loop), LOOP_TIMEOUT seconds;
#   2. the object-factor study (gpu_recipe.sh), RECIPE_TIMEOUT seconds;
#   3. everything both wrote, packed into OUT_DIR as results.tar.part-* (15 MiB each); a part that failed or ran
#      out of time still leaves what it wrote. Unpack with `cat results.tar.part-* | tar -x`.
#
#   OUT_DIR=$OUT bash benchmarks/gpu_session.sh
#   OUT_DIR=/tmp/out DEVICE=cpu SMOKE=1 bash benchmarks/gpu_session.sh     # the CPU smoke test of the whole session
cd "$(dirname "$0")/.."
OUT_DIR=${OUT_DIR:?set OUT_DIR to the folder that comes back}
LOOP_TIMEOUT=${LOOP_TIMEOUT:-200}
RECIPE_TIMEOUT=${RECIPE_TIMEOUT:-360}
RESULTS=$(mktemp -d)
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if [ -n "${SMOKE:-}" ]; then  # tiny settings for both parts (tests/)
    export PRESET=tiny LOOP_PRESETS=tiny:8:tiny LOOP_STEPS=2 LOOP_ROUNDS=1 LOOP_PHASE_STEPS=1 LOOP_VARIANTS=e6c087c,after \
        ENCODE_IMAGES=64 BATCH_SIZE=8 WORKERS=0 ARMS=base SEEDS=0 LATENT_ARM= IMAGES=64 LONG_ARMS=skip_dropout LONG_IMAGES=64 \
        LONG_BATCH=32 EVAL_IMAGES=1000000 EVAL_SAMPLES=64 ORACLE_IMAGES=64 ORACLE_PROBE_IMAGES=64 ORACLE_TEST=4
fi
echo "session start $(date -u +%T)"
PARTS=loop RESULTS_DIR="$RESULTS/loop" timeout "$LOOP_TIMEOUT" bash benchmarks/gpu_benchmarks.sh >"$RESULTS/loop.log" 2>&1
echo "loop part: exit $? at $(date -u +%T)"
export WORK_DIR=${WORK_DIR:-$(mktemp -d)}
RESULTS_DIR="$RESULTS/recipe" timeout "$RECIPE_TIMEOUT" bash benchmarks/gpu_recipe.sh >"$RESULTS/recipe.log" 2>&1
echo "recipe part: exit $? at $(date -u +%T)"
[ -f "$RESULTS/recipe/recipe_runs.tar" ] || RESULTS_DIR="$RESULTS/recipe" bash benchmarks/gpu_recipe.sh --pack-only
mkdir -p "$OUT_DIR"
tar -cf - -C "$RESULTS" . | split -b 15M - "$OUT_DIR/results.tar.part-"
ls -la "$OUT_DIR"
tail -n 3 "$RESULTS/loop.log" "$RESULTS/recipe.log"
