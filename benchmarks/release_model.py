"""Train, score, draw and write the model we ship: examples/models/encdiff-shapes3d-procedural.

One command reproduces it (about 80 minutes on one CPU core, most of it training):

    python benchmarks/release_model.py                      # train, then everything below
    python benchmarks/release_model.py --skip-training      # reuse --run-dir's trained pipeline
    python benchmarks/release_model.py --publish-only --push-to-hub your-name/encdiff-shapes3d-procedural

Steps: train the `cpu` preset on shapes3d-procedural (`RELEASE_TRAINING`, the same fields as
`concept-diffusion train --preset cpu --data shapes3d-procedural --max-steps 6250 --seed 0 --eval-every 1000
--eval-samples 1000 --checkpoint-every 1000`: 200,000 images); score the EMA pipeline with all six metrics at
disentanglement_lib's full sizes (the exact protocol); map which concept carries which factor; draw
labelled swap and traversal grids; save the pipeline (safetensors, portable layout) with a model card
that carries the scores and pictures; with `--push-to-hub REPO`, upload the folder in one commit.
"""

import argparse
import json
import os
import shutil
import sys
import time


DATA = "shapes3d-procedural"
RELEASE_TRAINING = {"preset": "cpu", "data": DATA, "max_steps": 6250, "max_minutes": None, "seed": 0,
                    "eval_every": 1000, "eval_samples": 1000, "checkpoint_every": 1000}
# Fields of a run's configuration that describe the machine's run, not the recipe: left out of the card.
RUN_FIELDS = {"output_dir", "resume", "report_to", "push_to_hub", "log_every"}
METRICS = ["factor_vae", "dci", "mig", "sap", "modularity", "beta_vae"]
SAMPLING_STEPS = 25
MAP_POINTS = 3000


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--run-dir", default="outputs/release-cpu", help="training output folder (checkpoints, log, pipeline)")
    parser.add_argument("--out", default="examples/models/encdiff-shapes3d-procedural", help="where the shipped model is written")
    parser.add_argument("--skip-training", action="store_true", help="use the pipeline already trained in --run-dir")
    parser.add_argument("--publish-only", action="store_true", help="only upload --out (needs --push-to-hub)")
    parser.add_argument("--push-to-hub", metavar="REPO", default=None, help="upload --out to this Hub model repo")
    parser.add_argument("--seed", type=int, default=0, help="seed of the evaluation and the pictures")
    args = parser.parse_args(argv)
    if args.publish_only and not args.push_to_hub:
        parser.error("--publish-only needs --push-to-hub REPO")
    return args


def train_release(run_dir: str) -> str:
    from concept_diffusion.training import TrainingConfig, build_config, train

    config = build_config(TrainingConfig, {**RELEASE_TRAINING, "output_dir": run_dir})
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
    """The configuration the run in `run_dir` trained with (its run.json), or `RELEASE_TRAINING` for older runs,
    without the fields that only say where and how that machine ran it (RUN_FIELDS)."""
    path = os.path.join(run_dir, "run.json")
    config = RELEASE_TRAINING
    if os.path.isfile(path):
        with open(path) as file:
            config = json.load(file).get("config", RELEASE_TRAINING)
    return {key: value for key, value in config.items() if key not in RUN_FIELDS}


def write_release(pipeline_dir: str, out: str, seed: int) -> dict:
    from concept_diffusion import ConceptDiffusionPipeline
    from concept_diffusion.atomic import atomic_directory, write_json
    from concept_diffusion.data import load_ground_truth
    from concept_diffusion.hub.cards import render_model_card

    pipe = ConceptDiffusionPipeline.from_pretrained(pipeline_dir)
    pipe.set_progress_bar_config(disable=True)
    data = load_ground_truth(DATA, image_size=pipe.concept_encoder.config.sample_size)
    scores = score(pipe, data, seed)
    with atomic_directory(out) as staging:
        pipe.save_pretrained(staging)
        draw(pipe, data, staging, seed)
        log = os.path.join(os.path.dirname(os.path.normpath(pipeline_dir)), "log.jsonl")
        if os.path.isfile(log):  # the training curve (loss and fast metrics against images seen) travels with the model
            shutil.copyfile(log, os.path.join(staging, "training_log.jsonl"))
        write_json(os.path.join(staging, "metrics.json"), {**scores, "protocol": "disentanglement_lib defaults (exact)", "seed": seed})
        card = render_model_card(pipe, "your-name/encdiff-shapes3d-procedural", metrics=scores, dataset=DATA,
                                 training_config=training_config(os.path.dirname(os.path.normpath(pipeline_dir))),
                                 swap_grid="swap.png", traversal_grid="traversal.png",
                                 concept_factor_map="concept_factor_map.png")
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
        pipeline_dir = os.path.join(args.run_dir, "pipeline") if args.skip_training else train_release(args.run_dir)
        scores = write_release(pipeline_dir, args.out, args.seed)
        print(json.dumps(scores, indent=2))
        print(f"wrote {args.out}")
    if args.push_to_hub:
        print(f"pushed: {publish(args.out, args.push_to_hub)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
