"""The main job: train the `cpu` preset on `shapes3d-procedural` for a few minutes, score it, draw it.

No download is needed. Everything lands in one folder:

    pipeline/        the trained pipeline (portable layout) with its model card, README.md
    metrics.json     FactorVAE, DCI and MIG of the final model
    swap.png         per-concept swaps: each row is a source, its reference, then concept k copied over
    traversal.png    one row per concept, swept over the range it takes on the data
    concept_factor_map.png   which concept carries which factor (labels the two pictures above)
    curves.png       loss and metrics against images seen
    log.jsonl, checkpoints/, samples/, logs/ (tensorboard)
"""

import json
import os
from dataclasses import dataclass
from typing import Optional


# Final scores on fewer points than disentanglement_lib's defaults, so that they take about a
# minute on 2 cores; `concept-diffusion evaluate` runs the full protocol.
FINAL_METRIC_SIZES = {
    "factor_vae": {"num_train": 2000, "num_eval": 1000, "num_variance_estimate": 5000},
    "dci": {"num_train": 5000, "num_test": 2500},
    "mig": {"num_train": 5000},
}

SAMPLING_STEPS = 25  # DDIM steps for the swap and traversal pictures
CONCEPT_MAP_POINTS = 2000  # images that name the factor each concept carries, for the pictures' labels


@dataclass
class QuickstartResult:
    output_dir: str
    metrics: dict
    files: dict


def quickstart(output_dir: str = "outputs/quickstart", minutes: float = 10.0, seed: int = 0,
               metric_sizes: Optional[dict] = None, fast_scores: bool = False, **overrides) -> QuickstartResult:
    """Train, evaluate and draw; returns the metrics and the files written.

    `overrides` are `TrainingConfig` fields (their `sample_steps` also draws the final pictures);
    `metric_sizes` replaces `FINAL_METRIC_SIZES`; `fast_scores` scores DCI with HistGradientBoosting
    (close to, not equal to, the reference's value).

    Example:
        >>> result = quickstart("outputs/quickstart", minutes=10)
        >>> result.metrics["factor_vae.eval_accuracy"]
    """
    from concept_diffusion.atomic import write_json
    from concept_diffusion.data import load_ground_truth
    from concept_diffusion.evaluation import evaluate
    from concept_diffusion.evaluation.evaluate import write_scores
    from concept_diffusion.pipelines import ConceptDiffusionPipeline
    from concept_diffusion.training import TrainingConfig, build_config, train
    from concept_diffusion.training.trainer import write_run_card
    from concept_diffusion.training.visualize import draw_concept_pictures, plot_curves

    config = build_config(TrainingConfig, {"preset": "cpu", "data": "shapes3d-procedural", "output_dir": output_dir,
                                           "max_minutes": minutes, "max_steps": None, "seed": seed,
                                           "eval_final": False, **overrides})  # scored below, with more points
    result = train(config)
    pipe = ConceptDiffusionPipeline.from_pretrained(result.pipeline_dir)
    pipe.set_progress_bar_config(disable=True)
    data = load_ground_truth(config.data, image_size=pipe.concept_encoder.config.sample_size)

    print("scoring the final model (FactorVAE, DCI, MIG) ...")
    metric_sizes = FINAL_METRIC_SIZES if metric_sizes is None else metric_sizes
    metrics = evaluate(pipe, data, metrics=list(metric_sizes), seed=seed, metric_kwargs=metric_sizes, fast=fast_scores)
    files = {"pipeline": result.pipeline_dir, "metrics": os.path.join(output_dir, "metrics.json")}
    write_scores({**metrics, "steps": result.step, "images_seen": result.images_seen,
                  "training_minutes": round(result.seconds / 60, 2)}, files["metrics"])

    pictures = draw_concept_pictures(pipe, data, output_dir, overrides.get("sample_steps", SAMPLING_STEPS), seed, CONCEPT_MAP_POINTS)
    files.update(pictures.files)

    write_run_card(pipe, result.pipeline_dir, config, metrics, files["swap"])
    files["model_card"] = os.path.join(result.pipeline_dir, "README.md")
    with open(result.log_file, "a") as log:  # the final scores end the metric curves
        log.write(json.dumps({"step": result.step, "images_seen": result.images_seen, "seconds": round(result.seconds, 3),
                              "scored_by": "quickstart", **metrics}) + "\n")
    files["curves"] = os.path.join(output_dir, "curves.png")
    plot_curves(result.log_file, files["curves"])
    files["log"] = result.log_file
    write_json(os.path.join(output_dir, "files.json"), files)
    return QuickstartResult(output_dir=output_dir, metrics=metrics, files=files)
