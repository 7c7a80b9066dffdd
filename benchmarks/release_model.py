"""Train, score, draw and write the model we ship: examples/models/encdiff-shapes3d-procedural.

One command reproduces it (about 100 minutes on one CPU core, most of it training):

    python benchmarks/release_model.py                      # train both phases, then everything below
    python benchmarks/release_model.py --phase-1 FOLDER     # phase 2 only, from a trained pipeline (e.g. the shipped one)
    python benchmarks/release_model.py --skip-training      # reuse --run-dir's trained pipelines
    python benchmarks/release_model.py --publish-only --push-to-hub your-name/encdiff-shapes3d-procedural

Steps: (phase 1) train the `cpu` preset on shapes3d-procedural (`RELEASE_TRAINING`, the same fields as
`concept-diffusion train --preset cpu --data shapes3d-procedural --max-steps 6250 --seed 0 --eval-every 1000
--eval-samples 1000 --checkpoint-every 1000`: 200,000 images); (phase 2, `DECODER_PHASE`) train its UNet alone on
every timestep with the concept encoder frozen (40,000 images), which cleans up the decoding and leaves the concepts
bit for bit as they were; score the EMA pipeline with all six metrics at disentanglement_lib's full sizes (the exact
protocol); measure its image fidelity (`benchmarks/fidelity/fidelity.py`); map which concept carries which factor;
draw labelled swap and traversal grids; save the pipeline (safetensors, portable layout) with a model card that
carries the scores, the fidelity and the pictures; with `--push-to-hub REPO`, upload the folder in one commit.
"""

import argparse
import json
import os
import shutil
import sys
import time

import numpy as np


DATA = "shapes3d-procedural"
RELEASE_TRAINING = {"preset": "cpu", "data": DATA, "max_steps": 6250, "max_minutes": None, "seed": 0,
                    "eval_every": 1000, "eval_samples": 1000, "checkpoint_every": 1000}
# Fields of a run's configuration that describe the machine's run, not the recipe: left out of the card.
RUN_FIELDS = {"output_dir", "resume", "report_to", "push_to_hub", "log_every"}
# Phase 2: the UNet alone, on uniform timesteps (phase 1 samples them logit-normal around high noise, so the UNet
# rarely learns the low-noise steps that clean up the image), with the plain L2 loss (phase 1's edge and gradient
# terms serve the encoder, which is frozen now), from phase 1's weights, with a decaying learning rate.
DECODER_PHASE = {"train_encoder": False, "timestep_sampling": "uniform", "edge_loss_weight": 0.0, "gradient_loss_weight": 0.0,
                 "learning_rate": 5e-4, "lr_decay_start": 0.5, "max_steps": 1250, "eval_every": 0, "eval_final": False,
                 "checkpoint_every": 250}
METRICS = ["factor_vae", "dci", "mig", "sap", "modularity", "beta_vae"]
SAMPLING_STEPS = 25
MAP_POINTS = 3000


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--run-dir", default="outputs/release-cpu", help="training output folder (checkpoints, log, pipeline)")
    parser.add_argument("--out", default="examples/models/encdiff-shapes3d-procedural", help="where the shipped model is written")
    parser.add_argument("--skip-training", action="store_true", help="use the pipelines already trained in --run-dir")
    parser.add_argument("--phase-1", default=None, metavar="FOLDER",
                        help="a trained phase-1 pipeline: train only phase 2 from it (default: train phase 1 in --run-dir)")
    parser.add_argument("--publish-only", action="store_true", help="only upload --out (needs --push-to-hub)")
    parser.add_argument("--push-to-hub", metavar="REPO", default=None, help="upload --out to this Hub model repo")
    parser.add_argument("--seed", type=int, default=0, help="seed of the evaluation and the pictures")
    args = parser.parse_args(argv)
    if args.publish_only and not args.push_to_hub:
        parser.error("--publish-only needs --push-to-hub REPO")
    return args


def decoder_run_dir(run_dir: str) -> str:
    return os.path.join(run_dir, "decoder")


def train_release(run_dir: str, phase_1: str = None) -> str:
    """Phase 1 in `run_dir` (unless `phase_1` names a trained pipeline), then phase 2 in run_dir/decoder; returns its pipeline."""
    from concept_diffusion.training import TrainingConfig, build_config, train

    if phase_1 is None:
        phase_1 = train(build_config(TrainingConfig, {**RELEASE_TRAINING, "output_dir": run_dir})).pipeline_dir
    config = build_config(TrainingConfig, {**RELEASE_TRAINING, **DECODER_PHASE, "init_from": os.path.abspath(phase_1),
                                           "output_dir": decoder_run_dir(run_dir)})
    return train(config).pipeline_dir


def score(pipe, data, seed: int) -> dict:
    """All six metrics with disentanglement_lib's default sizes (the exact protocol)."""
    from concept_diffusion.evaluation import evaluate

    started = time.perf_counter()
    scores = evaluate(pipe, data, metrics=METRICS, seed=seed)
    print(f"scored {len(METRICS)} metrics in {time.perf_counter() - started:.0f} s")
    return scores


def draw(pipe, data, out: str, seed: int) -> None:
    """The concept-factor map (PNG + JSON) and the labelled swap and traversal grids, into `out`."""
    from concept_diffusion.atomic import write_json
    from concept_diffusion.training.visualize import draw_concept_pictures

    concept_map = draw_concept_pictures(pipe, data, out, SAMPLING_STEPS, seed, MAP_POINTS).concept_map
    names, accuracy = concept_map["factors"], concept_map["accuracy"]
    write_json(os.path.join(out, "concept_factor_map.json"), {
        "points": MAP_POINTS, "factors": names, "accuracy": dict(zip(names, accuracy.round(4).tolist())),
        "normalised_mutual_information": concept_map["normalised_mutual_information"].round(4).tolist(),
        "concept_labels": concept_map["labels"]})


def training_config(run_dir: str) -> dict:
    """The configuration the run in `run_dir` trained with (its run.json), or the one `RELEASE_TRAINING` builds for
    runs without one, without the fields that only say where and how that machine ran it (RUN_FIELDS)."""
    from concept_diffusion.training import TrainingConfig, build_config

    path = os.path.join(run_dir, "run.json")
    config = build_config(TrainingConfig, RELEASE_TRAINING).to_dict()
    if os.path.isfile(path):
        with open(path) as file:
            config = json.load(file).get("config", config)
    return {key: value for key, value in config.items() if key not in RUN_FIELDS}


def both_phases(phase_1_dir: str, decoder_dir: str) -> dict:
    """The card's training table: phase 1's configuration, then what phase 2 changed."""
    first, second = training_config(phase_1_dir), training_config(decoder_dir)
    changed = {key: value for key, value in second.items() if first.get(key) != value and key != "init_from"}
    return {"phase 1": first, "phase 2 (UNet alone)": changed}


def fidelity_rows(result: dict) -> dict:
    """The card's fidelity table from `benchmarks/fidelity/fidelity.py`'s result."""
    rows = {}
    for row in result["reconstruction"]:
        rows[f"reconstruction PSNR / SSIM, {row['steps']} steps, {row['noise']} noise"] = f"{row['psnr']:.1f} dB / {row['ssim']:.3f}"
    for noise in ("fresh", "inverted"):
        swaps = {row["factor"]: row["accuracy"] for row in result["swaps"] if row.get("noise") == noise}
        rows[f"swap accuracy per factor, {noise} noise"] = ", ".join(f"{name} {value:.2f}" for name, value in swaps.items())
        error = result["reencoding_error"][noise]
        rows[f"re-encoding error, worst concept, {noise} noise"] = f"{error['worst']:.2f} spreads (concept {error['worst_concept']})"
    return rows


def training_logs(phase_1: str, decoder_dir: str) -> dict:
    """{file name in the release: the training log to copy}: each phase's curve (loss and fast metrics against images
    seen) travels with the model; a phase-1 folder that is itself a release brings its own."""
    candidates = {"training_log.jsonl": [os.path.join(phase_1, "training_log.jsonl"),
                                         os.path.join(os.path.dirname(os.path.normpath(phase_1)), "log.jsonl")],
                  "training_log_decoder.jsonl": [os.path.join(decoder_dir, "log.jsonl")]}
    return {name: next(path for path in paths if os.path.isfile(path))
            for name, paths in candidates.items() if any(os.path.isfile(path) for path in paths)}


def write_release(pipeline_dir: str, phase_1: str, out: str, seed: int) -> dict:
    from concept_diffusion import ConceptDiffusionPipeline
    from concept_diffusion.atomic import atomic_directory, write_json
    from concept_diffusion.data import load_ground_truth
    from concept_diffusion.hub.cards import render_model_card
    from concept_diffusion.training.prior import PRIOR_IMAGES, attach_prior, fit_concept_prior

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fidelity"))
    import fidelity

    pipe = ConceptDiffusionPipeline.from_pretrained(pipeline_dir)
    pipe.set_progress_bar_config(disable=True)
    data = load_ground_truth(DATA, image_size=pipe.concept_encoder.config.sample_size)
    if pipe.concept_prior is None:  # a phase 2 trained before runs fitted one
        attach_prior(pipe, fit_concept_prior(pipe, data.sample_observations(PRIOR_IMAGES, np.random.RandomState(seed))))
    scores = score(pipe, data, seed)
    measured = fidelity.main(["--model", pipeline_dir, "--name", "release"])
    decoder_dir = os.path.dirname(os.path.normpath(pipeline_dir))
    logs = training_logs(phase_1, decoder_dir)  # read before `out` is replaced: phase 1 may be the old release
    with atomic_directory(out) as staging:
        pipe.save_pretrained(staging)
        draw(pipe, data, staging, seed)
        for name, path in logs.items():
            shutil.copyfile(path, os.path.join(staging, name))
        write_json(os.path.join(staging, "metrics.json"), {**scores, "protocol": "disentanglement_lib defaults (exact)", "seed": seed})
        card = render_model_card(pipe, "your-name/encdiff-shapes3d-procedural", metrics=scores, dataset=DATA,
                                 training_config=both_phases(os.path.dirname(os.path.normpath(phase_1)), decoder_dir),
                                 swap_grid="swap.png", traversal_grid="traversal.png",
                                 concept_factor_map="concept_factor_map.png", fidelity=fidelity_rows(measured),
                                 fidelity_note=f"Measured by `benchmarks/fidelity/fidelity.py` on {measured['images']} held-out "
                                               f"images (swaps: {measured['pairs']} pairs per factor, read by a supervised "
                                               "factor reader; re-encoding error in units of each concept's spread).")
        card.save(os.path.join(staging, "README.md"))
    return scores


def publish(folder: str, repo_id: str) -> str:
    """Upload `folder` to the Hub model repo `repo_id` in one commit; returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, exist_ok=True)
    return api.upload_folder(folder_path=folder, repo_id=repo_id, commit_message="EncDiff on shapes3d-procedural (release_model.py)")


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.publish_only:
        phase_1 = args.phase_1 or os.path.join(args.run_dir, "pipeline")
        pipeline_dir = (os.path.join(decoder_run_dir(args.run_dir), "pipeline") if args.skip_training
                        else train_release(args.run_dir, args.phase_1))
        scores = write_release(pipeline_dir, phase_1, args.out, args.seed)
        print(json.dumps(scores, indent=2))
        print(f"wrote {args.out}")
    if args.push_to_hub:
        print(f"pushed: {publish(args.out, args.push_to_hub)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
