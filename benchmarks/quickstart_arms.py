"""The quickstart's levers at its own budget: each arm is `quickstart(minutes=...)` with other settings.

Every arm trains for the same wall-clock minutes on this machine (nothing else running), then is scored
exactly as `concept-diffusion quickstart` scores (FactorVAE, DCI, MIG at the quickstart's sizes, the exact
trees) with how well all concepts read each factor (the 2,000-image concept-factor map). Prints a
Markdown table and writes JSON; finished (arm, seed) pairs are read back, not trained again.

    python benchmarks/quickstart_arms.py --arms threads_2,processes_2 --seeds 0
    python benchmarks/quickstart_arms.py --report
"""

import argparse
import json
import os
import time

# arm: (processes, TrainingConfig overrides on top of ARM_BASE and the `cpu` preset, edits of the preset's component
# configs). Under 2 processes the batch is split: 16 each for batch 32, 8 each for batch 16.
ARMS = {
    "processes_2": (2, {}, {}),
    # twice the optimizer steps for the same images: a step of 16 costs 0.56x one of 32 on a core
    "processes_2_batch_16": (2, {"batch_size": 16}, {}),
    # the object early (x300 reads shape at 0.84-0.89 after 32,000 images, x100 at 0.36-0.44)
    "processes_2_batch_16_grad_x300": (2, {"batch_size": 16, "gradient_loss_weight": 300.0}, {}),
    # the hues first (with x100 they take two concepts each by 30,000 images), then more of the object
    "processes_2_batch_16_grad_100_to_300": (2, {"batch_size": 16, "gradient_loss_weight_start": 100.0, "gradient_loss_weight": 300.0,
                                                 "gradient_loss_weight_until": 0.5}, {}),
    # A hue is a ring (hue 0.9 lies next to 0.0): a smooth map to one number folds it, so each hue takes two concepts,
    # six of the ten (`hue_ring.py`); x300 gives the object more of them and leaves one per hue. 20 concepts (the
    # paper's N) leave room for both.
    "processes_2_grad_x300_concepts_20": (2, {"gradient_loss_weight": 300.0}, {"concept_encoder": {"num_concepts": 20}}),
    "processes_2_batch_16_grad_x300_concepts_20": (2, {"batch_size": 16, "gradient_loss_weight": 300.0},
                                                   {"concept_encoder": {"num_concepts": 20}}),
    # each concept an angle (`token_mode="angle"`): one concept holds a hue's ring, so the hues need three of the ten
    "processes_2_batch_16_angle": (2, {"batch_size": 16, "token_mode": "angle"}, {}),
    "processes_2_batch_16_grad_x300_angle": (2, {"batch_size": 16, "gradient_loss_weight": 300.0, "token_mode": "angle"}, {}),
    # x300 first, for the object; falling to 100 by half-way, for the hues (one angle each)
    "processes_2_batch_16_grad_300_to_100_angle": (2, {"batch_size": 16, "gradient_loss_weight_start": 300.0, "gradient_loss_weight": 100.0,
                                                       "gradient_loss_weight_until": 0.5, "token_mode": "angle"}, {}),
}
# Every arm starts from the quickstart as it was until 2026-12-07 (the preset's batch and evaluations), not from
# QUICKSTART_TRAINING, so that each recorded row keeps its meaning.
ARM_BASE = {"batch_size": 32, "eval_every": 250}
FACTORS = ["floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"]
HEADLINE = {"factor_vae.eval_accuracy": "FactorVAE", "dci.disentanglement": "DCI D", "mig.discrete_mig": "MIG"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--arms", default="processes_2,processes_2_batch_16", help=f"comma-separated, from {', '.join(ARMS)}")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--minutes", type=float, default=10.0, help="training minutes of every arm (the quickstart's 10)")
    parser.add_argument("--eval-every", type=int, default=None,
                        help="steps between the trainer's scores during training, for every arm (0: none; default: the preset's)")
    parser.add_argument("--work-dir", default="outputs/quickstart_arms")
    parser.add_argument("--report", action="store_true", help="only print the recorded runs")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "quickstart_arms.json"))
    args = parser.parse_args(argv)
    args.arms = [arm.strip() for arm in args.arms.split(",") if arm.strip()]
    unknown = sorted(set(args.arms) - set(ARMS))
    if unknown:
        parser.error(f"--arms: unknown {unknown}; choose from {', '.join(ARMS)}")
    args.seeds = [int(seed) for seed in args.seeds.split(",")]
    return args


def run_arm(arm: str, seed: int, minutes: float, work_dir: str, eval_every=None) -> dict:
    """Train and score one (arm, seed) with the quickstart; returns its record."""
    from concept_diffusion.training.quickstart import quickstart

    from cpu_ablation import copy_preset

    processes, overrides, edits = ARMS[arm]
    overrides = {**ARM_BASE, **overrides}
    if eval_every is not None:
        overrides = {**overrides, "eval_every": eval_every}
    if edits:
        overrides = {**overrides, "preset": copy_preset("cpu", os.path.join(work_dir, "presets", arm), edits)}
    started = time.monotonic()
    result = quickstart(os.path.join(work_dir, run_name(arm, seed, minutes, eval_every)), minutes=minutes, seed=seed, processes=processes, **overrides)
    with open(result.files["metrics"]) as file:
        scores = json.load(file)
    return {"arm": arm, "seed": seed, "minutes": minutes, "processes": processes, "overrides": overrides, "preset_edits": edits,
            "wall_minutes": round((time.monotonic() - started) / 60, 2), **scores}


def run_name(arm: str, seed: int, minutes: float, eval_every=None) -> str:
    return f"{arm}-seed{seed}-{minutes:g}min" + ("" if eval_every is None else f"-eval{eval_every}")


def table(records: list) -> str:
    header = ["arm", "seed", "evaluations every", "images", "steps"] + list(HEADLINE.values()) + FACTORS
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for record in records:
        every = record.get("eval_every")
        cells = [record["arm"], str(record["seed"]), "250 steps" if every is None else (f"{every} steps" if every else "none"),
                 f"{record['images_seen']:,}", str(record["steps"])]
        cells += [f"{record[key]:.3f}" for key in HEADLINE]
        cells += [f"{record.get(f'factor_accuracy.{name}', float('nan')):.2f}" for name in FACTORS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    from concept_diffusion.atomic import write_json

    args = parse_args(argv)
    recorded = json.load(open(args.out)) if os.path.isfile(args.out) else {"runs": {}}
    if not args.report:
        for arm in args.arms:
            for seed in args.seeds:
                key = run_name(arm, seed, args.minutes, args.eval_every)
                if key in recorded["runs"]:
                    continue
                recorded["runs"][key] = {**run_arm(arm, seed, args.minutes, args.work_dir, args.eval_every), "eval_every": args.eval_every}
                write_json(args.out, recorded)  # after every run: an interrupted study keeps what finished
    print(table(list(recorded["runs"].values())))


if __name__ == "__main__":
    main()
