"""What each ablation arm costs per training image on one CPU core, measured side by side in one run.

The runs of `cpu_ablation.py` report their own wall time, but runs of different batches share the
machine with different work, so their costs differ by up to a third for the same arm. This builds
each arm's real training step (the trainer's `setup` and `training_step`, with the arm's flags and
config edits), then lets the arms take turns: `--rounds` rounds of `--steps` steps each, one torch
thread, and reports the median milliseconds per image and each arm's ratio to the base.

    python benchmarks/arm_cost.py --arms base,skip_dropout,adagn,encoder_lr_x3,concepts_20,pixels_64x64
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

import cpu_ablation


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--arms", default="base,skip_dropout", help=f"comma-separated, from {', '.join(cpu_ablation.ARMS)}")
    parser.add_argument("--steps", type=int, default=10, help="timed steps of each arm per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--vae", default=None, help="trained first-stage folder, for the latent arm")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "arm_cost.json"))
    args = parser.parse_args(argv)
    args.arms = [arm.strip() for arm in args.arms.split(",") if arm.strip()]
    unknown = sorted(set(args.arms) - set(cpu_ablation.ARMS))
    if unknown or not args.arms:
        parser.error(f"--arms: unknown {unknown or 'empty list'}; choose from {', '.join(cpu_ablation.ARMS)}")
    if "base" not in args.arms:
        args.arms.insert(0, "base")  # the ratios need it
    return args


def arm_step(arm: str, work_dir: str, vae):
    """A function running one training step of `arm` (the trainer's own), after a warm-up step."""
    from concept_diffusion.cli.train import train_config
    from concept_diffusion.training.data import batch_loader
    from concept_diffusion.training.runtime import make_accelerator
    from concept_diffusion.training.trainer import setup, training_step

    preset = cpu_ablation.arm_preset(arm, work_dir, vae)
    flags = cpu_ablation.arm_flags(arm, vae)
    config = train_config(["--preset", preset, "--output-dir", os.path.join(work_dir, arm), "--max-steps", "1", "--report-to", "none",
                           "--batch-size", str(cpu_ablation.BATCH), *flags])
    parts, dataset, _ = setup(config, make_accelerator(), None)
    batches = iter(batch_loader(dataset, config.batch_size, config.seed))
    counter = iter(range(10**9))

    def step():
        training_step(parts, config, next(batches), next(counter))

    step()
    return step


def main(argv=None) -> int:
    from concept_diffusion.atomic import write_json

    args = parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as work_dir:
        steps = {arm: arm_step(arm, work_dir, args.vae) for arm in args.arms}
        rounds = {arm: [] for arm in args.arms}
        for _ in range(args.rounds):
            for arm, step in steps.items():
                started = time.perf_counter()
                for _ in range(args.steps):
                    step()
                rounds[arm].append(1000 * (time.perf_counter() - started) / (args.steps * cpu_ablation.BATCH))
    median = {arm: statistics.median(values) for arm, values in rounds.items()}
    print(f"| arm | ms/image (one core, median of {args.rounds} rounds) | x base | the rounds |")
    print("|---|---:|---:|---|")
    for arm in args.arms:
        print(f"| {arm} | {median[arm]:.1f} | {median[arm] / median['base']:.2f} | " + ", ".join(f"{v:.1f}" for v in rounds[arm]) + " |")
    command = " ".join(["python", "benchmarks/arm_cost.py", *(argv if argv is not None else sys.argv[1:])])
    write_json(args.out, {"command": command, "batch_size": cpu_ablation.BATCH, "steps": args.steps,
                          "ms_per_image": median, "rounds": rounds})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
