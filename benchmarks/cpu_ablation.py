"""Controlled CPU ablation of the `cpu` preset: one change at a time, several seeds, equal image budgets, exact metrics.

Each (arm, seed) trains with `concept-diffusion train --preset cpu` plus the arm's flags, one torch thread
per run, runs spread over the cores (`--parallel`, each pinned to its own core); then every final EMA
pipeline is scored with all six metrics at disentanglement_lib's full sizes. Prints a table (mean and
spread over seeds per arm) and writes JSON.

    python benchmarks/cpu_ablation.py --arms base,uniform_t --seeds 0,1 --images 32000 --parallel 2
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# One change each from the `cpu` preset's defaults (x0-prediction, logit-normal t with mean 1, L2, lr 2e-3, batch 32).
ARMS = {
    "base": [],
    "uniform_t": ["--timestep-sampling", "uniform"],
    "released_objective": ["--prediction-type", "epsilon", "--loss", "l1", "--timestep-sampling", "uniform"],
    "lr_1e-3": ["--learning-rate", "0.001"],
    "warmup_1000": ["--lr-warmup-steps", "1000"],
}
HEADLINE = ["factor_vae.eval_accuracy", "dci.disentanglement", "dci.completeness", "mig.discrete_mig", "beta_vae.eval_accuracy"]
BATCH = 32


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--arms", default="base,uniform_t", help=f"comma-separated, from {', '.join(ARMS)}")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--images", type=int, default=32000, help="images per run (batch 32)")
    parser.add_argument("--parallel", type=int, default=min(2, os.cpu_count() or 1), help="runs at once, one core each")
    parser.add_argument("--work-dir", default="outputs/cpu_ablation")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "cpu_ablation.json"))
    args = parser.parse_args(argv)
    args.arms = [arm.strip() for arm in args.arms.split(",") if arm.strip()]
    unknown = sorted(set(args.arms) - set(ARMS))
    if unknown or not args.arms:
        parser.error(f"--arms: unknown {unknown or 'empty list'}; choose from {', '.join(ARMS)}")
    args.seeds = [int(seed) for seed in args.seeds.split(",")]
    if args.images < BATCH:
        parser.error(f"--images must be at least one batch ({BATCH})")
    return args


def one_core(command: list, core: int) -> list:
    """The command pinned to `core` with one thread (two runs on two cores never share one)."""
    return ["taskset", "-c", str(core), "env", "OMP_NUM_THREADS=1", "MKL_NUM_THREADS=1", "NUMBA_NUM_THREADS=1", *command]


def run_all(jobs: list, parallel: int) -> None:
    """Run (name, command, log path) jobs, `parallel` at a time, job i on core i % parallel; raise on a failure."""
    pending, running = list(jobs), {}
    while pending or running:
        free = [core for core in range(parallel) if core not in running]
        while pending and free:
            name, command, log = pending.pop(0)
            core = free.pop(0)
            print(f"start {name} on core {core}", flush=True)
            running[core] = (name, subprocess.Popen(one_core(command, core), stdout=open(log, "w"), stderr=subprocess.STDOUT), log)
        time.sleep(5)
        for core, (name, process, log) in list(running.items()):
            if process.poll() is not None:
                del running[core]
                if process.returncode != 0:
                    raise RuntimeError(f"{name} failed (exit {process.returncode}); see {log}")
                print(f"done {name}", flush=True)


SCORE = """
import json, sys
from concept_diffusion import ConceptDiffusionPipeline, evaluate, load_ground_truth
pipe = ConceptDiffusionPipeline.from_pretrained(sys.argv[1])
data = load_ground_truth("shapes3d-procedural", image_size=pipe.concept_encoder.config.sample_size)
scores = evaluate(pipe, data, metrics=["factor_vae", "dci", "mig", "sap", "modularity", "beta_vae"], seed=0, progress=False)
json.dump(scores, open(sys.argv[2], "w"), indent=2)
"""


def main(argv=None) -> int:
    from concept_diffusion.atomic import write_json

    args = parse_args(argv)
    steps = args.images // BATCH
    os.makedirs(args.work_dir, exist_ok=True)
    runs = [(arm, seed, os.path.join(args.work_dir, f"{arm}-seed{seed}")) for arm in args.arms for seed in args.seeds]
    train = [(f"{arm} seed {seed}", ["concept-diffusion", "train", "--preset", "cpu", "--data", "shapes3d-procedural",
                                     "--max-steps", str(steps), "--seed", str(seed), "--eval-every", "0", "--eval-final", "false",
                                     "--checkpoint-every", "0", "--report-to", "none", "--output-dir", folder, *ARMS[arm]],
              folder + ".train.log") for arm, seed, folder in runs]
    started = time.monotonic()
    run_all(train, args.parallel)
    train_seconds = time.monotonic() - started
    score = [(f"score {arm} seed {seed}", [sys.executable, "-c", SCORE, os.path.join(folder, "pipeline"), folder + ".scores.json"],
              folder + ".score.log") for arm, seed, folder in runs]
    run_all(score, args.parallel)
    results = []
    for arm, seed, folder in runs:
        with open(os.path.join(folder, "run.json")) as file:
            seconds = json.load(file)["seconds"]
        with open(folder + ".scores.json") as file:
            results.append({"arm": arm, "seed": seed, "images": steps * BATCH, "seconds": seconds,
                            "ms_per_image_one_core": round(1000 * seconds / (steps * BATCH), 2), "scores": json.load(file)})
    print(f"\n{args.images:,} images per run, exact metrics (mean over seeds, min..max)")
    print(f"{'arm':<20}" + "".join(f"{key.split('.')[0]:>22}" for key in HEADLINE) + f"{'ms/image':>10}")
    for arm in args.arms:
        mine = [r for r in results if r["arm"] == arm]
        cells = []
        for key in HEADLINE:
            values = [r["scores"][key] for r in mine]
            cells.append(f"{statistics.mean(values):.3f} ({min(values):.2f}..{max(values):.2f})")
        print(f"{arm:<20}" + "".join(f"{cell:>22}" for cell in cells) + f"{statistics.mean(r['ms_per_image_one_core'] for r in mine):>10.1f}")
    summary = {"command": " ".join(sys.argv), "arms": {arm: ARMS[arm] for arm in args.arms}, "images": steps * BATCH,
               "train_wall_seconds": round(train_seconds, 1), "runs": results}
    write_json(args.out, summary)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
