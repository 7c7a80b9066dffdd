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

import dataclasses
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Optional


# Final scores on fewer points than disentanglement_lib's defaults, so that they take about a
# minute on 2 cores; `concept-diffusion evaluate` runs the full protocol.
FINAL_METRIC_SIZES = {
    "factor_vae": {"num_train": 2000, "num_eval": 1000, "num_variance_estimate": 5000},
    "dci": {"num_train": 5000, "num_test": 2500},
    "mig": {"num_train": 5000},
}

# The quickstart's own training settings on top of the preset (benchmarks/RESULTS.md, "The quickstart's 10 minutes"):
# batch 16, twice the optimizer steps of the preset's 32 for 0.9x the images/s; no scores during training (each
# costs 36 s of the 10 minutes), the final model is scored below.
QUICKSTART_TRAINING = {"batch_size": 16, "eval_every": 0}
SAMPLING_STEPS = 25  # DDIM steps for the swap and traversal pictures
CONCEPT_MAP_POINTS = 2000  # images that name the factor each concept carries, for the pictures' labels


@dataclass
class QuickstartResult:
    output_dir: str
    metrics: dict
    files: dict


def default_processes() -> int:
    """The quickstart's training processes: 1 on a GPU (one process feeds it), else 2 where 2 cores are free."""
    import torch

    if torch.cuda.is_available():
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cores, 2)


def train_in_processes(config, processes: int):
    """Train `config` as one job of `processes` CPU processes (torchrun, gloo), one torch thread each.

    On a CPU the step's small convolutions keep one thread busy far better than two threads share them,
    so two processes with half the batch each train more images per second than one with two threads
    (benchmarks/RESULTS.md, "The quickstart's 10 minutes"). The config travels as a `--config` file; the workers are
    this interpreter's `concept-diffusion train`. Returns the run's `TrainingResult`.
    """
    from concept_diffusion.atomic import write_json
    from concept_diffusion.training.trainer import TrainingResult

    os.makedirs(config.output_dir, exist_ok=True)
    config_file = os.path.join(config.output_dir, "quickstart_config.json")
    write_json(config_file, config.to_dict())
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "concept_diffusion.cli", "train", "--config", config_file]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    completed = subprocess.run(command, env=environment)
    if completed.returncode != 0:
        raise RuntimeError(f"training in {processes} processes failed (exit code {completed.returncode}); the command was "
                           f"{' '.join(command)}: run it to see its output, or pass processes=1")
    with open(os.path.join(config.output_dir, "run.json")) as file:
        run = json.load(file)
    return TrainingResult(pipeline_dir=run["pipeline"], step=run["step"], images_seen=run["images_seen"],
                          seconds=run["seconds"], metrics={}, log_file=os.path.join(config.output_dir, "log.jsonl"))


def quickstart(output_dir: str = "outputs/quickstart", minutes: float = 10.0, seed: int = 0,
               metric_sizes: Optional[dict] = None, fast_scores: bool = False, processes: Optional[int] = None,
               **overrides) -> QuickstartResult:
    """Train, evaluate and draw; returns the metrics and the files written.

    `overrides` are `TrainingConfig` fields over the preset's and `QUICKSTART_TRAINING` (their `sample_steps`
    also draws the final pictures);
    `metric_sizes` replaces `FINAL_METRIC_SIZES`; `fast_scores` scores DCI with HistGradientBoosting
    (close to, not equal to, the reference's value); `processes` > 1 trains as that many single-threaded
    CPU processes (`train_in_processes`), each with `batch_size / processes` images per step (None:
    `default_processes()`).

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
                                           "eval_final": False, **QUICKSTART_TRAINING, **overrides})  # scored below
    processes = default_processes() if processes is None else processes
    if processes < 1:
        raise ValueError(f"processes must be 1 or more, got {processes}")
    if processes > 1:
        if config.batch_size % processes:
            raise ValueError(f"batch_size {config.batch_size} must split evenly over processes={processes}")
        config = dataclasses.replace(config, batch_size=config.batch_size // processes)
        result = train_in_processes(config, processes)
    else:
        result = train(config)
    pipe = ConceptDiffusionPipeline.from_pretrained(result.pipeline_dir)
    pipe.set_progress_bar_config(disable=True)
    data = load_ground_truth(config.data, image_size=pipe.concept_encoder.config.sample_size)

    print("scoring the final model (FactorVAE, DCI, MIG) ...")
    metric_sizes = FINAL_METRIC_SIZES if metric_sizes is None else metric_sizes
    metrics = evaluate(pipe, data, metrics=list(metric_sizes), seed=seed, metric_kwargs=metric_sizes, fast=fast_scores)
    pictures = draw_concept_pictures(pipe, data, output_dir, overrides.get("sample_steps", SAMPLING_STEPS), seed, CONCEPT_MAP_POINTS)
    concept_map = pictures.concept_map  # how well all concepts together read each factor, the trainer's factor_accuracy
    metrics.update({f"factor_accuracy.{name}": float(accuracy) for name, accuracy in zip(concept_map["factors"], concept_map["accuracy"])})
    files = {"pipeline": result.pipeline_dir, "metrics": os.path.join(output_dir, "metrics.json"), **pictures.files}
    write_scores({**metrics, "steps": result.step, "images_seen": result.images_seen,
                  "training_minutes": round(result.seconds / 60, 2)}, files["metrics"])

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
