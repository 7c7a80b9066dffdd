"""Training efficiency: EncDiff against a beta-VAE and a beta-TCVAE with the same encoder, on the
same data in the same order, scored by the same metrics (FactorVAE, DCI, MIG, reconstruction MSE)
against images seen and wall time.

EncDiff trains first, for `--images N` or `--minutes M`; then each baseline gets the same number
of images (`--match images`, the default) or the same wall time (`--match time`). The metrics are
the fast ones the EncDiff trainer logs every `--eval-every` steps (EncDiff: with its EMA weights;
sizes from `--eval-samples`). Reconstruction MSE is in [0, 1] pixel units on one fixed batch of 64
images: the baselines decode the posterior mean (logged at every evaluation); EncDiff's is measured
once at the end, from the saved pipeline with `--recon-steps` DDIM steps (20 by default to keep it
cheap; the paper samples with 200) from seeded noise, so it is a sampling error, not a decoder's.

For a latent preset (`shapes3d`: 64x64, VQ latents) the first stage is trained once, for
`--vae-steps` steps, and shared by the seeds; its time is reported apart and is not in EncDiff's.

    python benchmarks/train_efficiency.py --preset cpu --images 64000 --seeds 0,1          # CPU
    python benchmarks/train_efficiency.py --preset shapes3d --device cuda --minutes 4 \\
        --vae-steps 1500 --seeds 0 --mixed-precision bf16 --num-workers 8                    # one GPU

Writes benchmarks/results/train_efficiency.json (after every run, atomically) and a PNG beside it.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time

METRICS = [("factor_vae.eval_accuracy", "FactorVAE"), ("dci.disentanglement", "DCI D"), ("mig.discrete_mig", "MIG"),
           ("recon_mse", "recon MSE")]
BASELINES = ("beta_vae", "beta_tcvae")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--preset", choices=["cpu", "shapes3d", "tiny"], default="cpu",
                        help="EncDiff preset; sets image size, concepts and width (tiny: the smoke test)")
    parser.add_argument("--data", default="shapes3d-procedural", help="ground-truth data with factors (default: shapes3d-procedural)")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--images", type=int, help="EncDiff's budget in images seen (rounded down to whole batches)")
    budget.add_argument("--minutes", type=float, help="EncDiff's budget in minutes of training (evaluations included)")
    parser.add_argument("--match", choices=["images", "time"], default="images",
                        help="give each baseline EncDiff's images seen (default) or its wall time")
    parser.add_argument("--models", default="encdiff,beta_vae,beta_tcvae", help="comma-separated; encdiff (when named) trains first and sets the baselines' budget")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="where everything trains; cpu hides any GPU from the EncDiff trainer (accelerate) too")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step, every model")
    parser.add_argument("--eval-every", type=int, default=500, help="steps between metric evaluations")
    parser.add_argument("--eval-samples", type=int, default=2000, help="training points per metric (evaluation points: half)")
    parser.add_argument("--vae-steps", type=int, default=2000, help="first-stage steps for latent presets")
    parser.add_argument("--recon-steps", type=int, default=20, help="DDIM steps for EncDiff's reconstruction MSE")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers rendering batches")
    parser.add_argument("--config", default=None,
                        help="YAML/JSON file of TrainingConfig fields for EncDiff (over the preset's training.json), "
                             "e.g. to try prediction_type or loss on a preset")
    parser.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default="no",
                        help="EncDiff's accelerate mixed precision (bf16 on a recent GPU)")
    parser.add_argument("--work-dir", default="outputs/train_efficiency", help="run folders (replaced per model and seed)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "train_efficiency.json"))
    args = parser.parse_args(argv)
    args.models = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = sorted(set(args.models) - {"encdiff", *BASELINES})
    if unknown or not args.models:
        parser.error(f"--models: unknown {unknown or 'empty list'}; choose from encdiff, {', '.join(BASELINES)}")
    try:
        args.seeds = [int(seed) for seed in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds: expected comma-separated integers like 0,1, got {args.seeds!r}")
    for name in ("images", "minutes"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name} must be positive, got {value}")
    if args.images is not None and args.images < args.batch_size:
        parser.error(f"--images {args.images} is less than one batch ({args.batch_size}): raise it or lower --batch-size")
    return args


def read_curve(log_path: str) -> list:
    """The evaluation records of a JSONL training log: images seen, seconds and every metric present."""
    keys = {key for key, _ in METRICS}
    with open(log_path) as file:
        records = [json.loads(line) for line in file if line.strip()]
    return [{"step": r["step"], "images_seen": r["images_seen"], "seconds": r["seconds"],
             **{k: v for k, v in r.items() if k in keys}, **({"final": True} if r.get("final") else {})}
            for r in records if keys & set(r)]


def encdiff_reconstruction_mse(pipeline_dir: str, images, steps: int, seed: int, device: str) -> float:
    """Reconstruction MSE of a saved EncDiff pipeline on `images` ([-1, 1]), `steps` DDIM steps from seeded noise."""
    import torch

    from baselines import reconstruction_mse
    from concept_diffusion import ConceptDiffusionPipeline

    pipe = ConceptDiffusionPipeline.from_pretrained(pipeline_dir).to(device)
    pipe.set_progress_bar_config(disable=True)
    with torch.inference_mode():
        # The pipeline takes images in [0, 1] (diffusers' convention); numpy (B, H, W, C) reads the same in every version.
        pixels = ((images.float() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
        out = pipe(images=pixels, num_inference_steps=steps, generator=torch.Generator().manual_seed(seed),
                   output_type="pt").images
    return reconstruction_mse(out * 2 - 1, images.to(out.device))


def train_first_stage(args, preset_vae: bool) -> tuple:
    """Train the preset's first stage once; returns (folder or None, its record for the JSON)."""
    if not preset_vae:
        return None, None
    from concept_diffusion.training import AutoencoderTrainingConfig, build_config, train_autoencoder

    output_dir = os.path.join(args.work_dir, "vae")
    shutil.rmtree(output_dir, ignore_errors=True)
    config = build_config(AutoencoderTrainingConfig, {"preset": args.preset, "data": args.data, "output_dir": output_dir,
                                                      "max_steps": args.vae_steps, "batch_size": args.batch_size,
                                                      "num_workers": args.num_workers})
    started = time.monotonic()
    vae_dir = train_autoencoder(config)
    seconds = time.monotonic() - started
    return vae_dir, {"steps": args.vae_steps, "images_seen": args.vae_steps * args.batch_size, "seconds": round(seconds, 1),
                     "folder": vae_dir}


def train_encdiff(args, seed: int, vae_dir) -> dict:
    from concept_diffusion.training import TrainingConfig, build_config, train

    output_dir = os.path.join(args.work_dir, f"encdiff-seed{seed}")
    shutil.rmtree(output_dir, ignore_errors=True)
    overrides = {"preset": args.preset, "data": args.data, "vae": vae_dir, "output_dir": output_dir, "seed": seed,
                 "batch_size": args.batch_size, "eval_every": args.eval_every, "eval_samples": args.eval_samples,
                 "eval_metrics": ["factor_vae", "dci", "mig"], "checkpoint_every": 0, "report_to": "none",
                 "num_workers": args.num_workers, "mixed_precision": args.mixed_precision}
    if args.images is not None:
        overrides["max_steps"] = args.images // args.batch_size
    else:
        overrides.update(max_steps=None, max_minutes=args.minutes)
    config = build_config(TrainingConfig, overrides, config_file=args.config)
    result = train(config)
    return {"model": "encdiff", "seed": seed, "steps": result.step, "images_seen": result.images_seen,
            "seconds": round(result.seconds, 1), "final": dict(result.metrics), "curve": read_curve(result.log_file),
            "output_dir": output_dir, "pipeline_dir": result.pipeline_dir, "config": config.to_dict()}


def train_one_baseline(args, kind: str, seed: int, encoder_config: dict, budget: dict) -> dict:
    from baselines import train_baseline

    output_dir = os.path.join(args.work_dir, f"{kind}-seed{seed}")
    shutil.rmtree(output_dir, ignore_errors=True)
    result = train_baseline(kind, data_name=args.data, image_size=encoder_config["sample_size"],
                            z_dim=encoder_config["num_concepts"], width=encoder_config["width"], batch_size=args.batch_size,
                            eval_every=args.eval_every, eval_samples=args.eval_samples, seed=seed, output_dir=output_dir,
                            device=args.device, num_workers=args.num_workers, **budget)
    return {"model": kind, "seed": seed, "steps": result.step, "images_seen": result.images_seen,
            "seconds": round(result.seconds, 1), "final": dict(result.metrics), "curve": read_curve(result.log_file),
            "output_dir": output_dir}


def summarise(runs: list) -> dict:
    """Median over seeds of each model's final numbers."""
    summary = {}
    for model in dict.fromkeys(run["model"] for run in runs):
        mine = [run for run in runs if run["model"] == model]
        entry = {"seeds": [run["seed"] for run in mine], "images_seen": statistics.median(r["images_seen"] for r in mine),
                 "seconds": statistics.median(r["seconds"] for r in mine)}
        for key, _ in METRICS:
            values = [run["final"][key] for run in mine if key in run["final"]]
            if values:
                entry[key] = statistics.median(values)
        summary[model] = entry
    return summary


def write_json(path: str, value) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = path + ".tmp"
    with open(temporary, "w") as file:
        json.dump(value, file, indent=2)
    os.replace(temporary, path)


def plot(runs: list, png_path: str) -> None:
    """One panel per metric against images seen; a colour per model, a line style per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"encdiff": "tab:red", "beta_vae": "tab:blue", "beta_tcvae": "tab:green"}
    styles = ["-", "--", ":", "-."]
    seeds = sorted({run["seed"] for run in runs})
    figure, axes = plt.subplots(2, 2, figsize=(10, 7))
    for axis, (key, title) in zip(axes.flat, METRICS):
        for run in runs:
            points = [(r["images_seen"], r[key]) for r in run["curve"] if key in r]
            if points:
                axis.plot(*zip(*points), styles[seeds.index(run["seed"]) % len(styles)], marker="o", markersize=3,
                          color=colours[run["model"]], label=f"{run['model']} seed {run['seed']}")
        axis.set_title(title)
        axis.set_xlabel("images seen")
        if key == "recon_mse":
            axis.set_yscale("log")
    axes.flat[0].legend(fontsize=8)
    figure.tight_layout()
    temporary = png_path + ".tmp.png"
    figure.savefig(temporary, dpi=100)
    plt.close(figure)
    os.replace(temporary, png_path)


def print_table(summary: dict) -> None:
    print(f"\n{'model':<11} {'seeds':<7} {'images':>9} {'train s':>8} " + " ".join(f"{title:>10}" for _, title in METRICS))
    for model, entry in summary.items():
        values = " ".join(f"{entry[key]:>10.4f}" if key in entry else f"{'-':>10}" for key, _ in METRICS)
        print(f"{model:<11} {','.join(map(str, entry['seeds'])):<7} {entry['images_seen']:>9.0f} {entry['seconds']:>8.1f} {values}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # read at CUDA's first use: keeps accelerate (EncDiff) on the CPU too
    import torch

    from baselines import reconstruction_batch
    from concept_diffusion.presets import preset_folder
    from concept_diffusion.training.data import load_training_data

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda, but torch sees no CUDA GPU here: run with --device cpu")
    with open(os.path.join(preset_folder(args.preset), "concept_encoder", "config.json")) as file:
        encoder_config = json.load(file)
    with open(os.path.join(preset_folder(args.preset), "model_index.json")) as file:
        preset_vae = json.load(file).get("vae", [None, None])[1] is not None
    device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else f"{platform.machine()} CPU, {len(os.sched_getaffinity(0))} cores"
    results = {"command": " ".join([os.path.basename(sys.argv[0]), *(argv if argv is not None else sys.argv[1:])]),
               "device": device_name, "torch": torch.__version__, "preset": args.preset, "data": args.data,
               "budget": {"images": args.images, "minutes": args.minutes, "match": args.match},
               "batch_size": args.batch_size, "eval_every": args.eval_every, "eval_samples": args.eval_samples,
               "recon_steps": args.recon_steps, "first_stage": None, "runs": [], "summary": {}}
    png_path = os.path.splitext(args.out)[0] + ".png"

    def save():
        results["summary"] = summarise(results["runs"])
        write_json(args.out, results)
        if results["runs"]:
            plot(results["runs"], png_path)

    vae_dir = None
    if "encdiff" in args.models:
        vae_dir, results["first_stage"] = train_first_stage(args, preset_vae)
        save()
    dataset, _ = load_training_data(args.data, encoder_config["sample_size"])
    for seed in args.seeds:
        budget = {"max_steps": args.images // args.batch_size} if args.images is not None else {"max_minutes": args.minutes}
        if "encdiff" in args.models:
            run = train_encdiff(args, seed, vae_dir)
            started = time.monotonic()
            run["final"]["recon_mse"] = encdiff_reconstruction_mse(run["pipeline_dir"], reconstruction_batch(dataset, seed),
                                                                   args.recon_steps, seed, args.device)
            run["recon_seconds"] = round(time.monotonic() - started, 1)
            run["curve"][-1]["recon_mse"] = run["final"]["recon_mse"]
            results["runs"].append(run)
            save()
            if args.match == "images":
                budget = {"max_steps": run["steps"]}
            else:
                budget = {"max_minutes": run["seconds"] / 60}
        for kind in (model for model in args.models if model in BASELINES):
            results["runs"].append(train_one_baseline(args, kind, seed, encoder_config, budget))
            save()
    save()
    print_table(results["summary"])
    print(f"\nwrote {args.out} and {png_path} ({results['device']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
