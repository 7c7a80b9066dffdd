import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from concept_diffusion import ConceptDiffusionPipeline
from concept_diffusion.cli import main as cli_main
from concept_diffusion.training import (
    AutoencoderTrainingConfig,
    TrainingConfig,
    TrainingDiverged,
    build_config,
    train,
    train_autoencoder,
)
from concept_diffusion.training.data import StepBatchSampler

TINY = dict(preset="tiny", batch_size=4, lr_warmup_steps=2, eval_every=0, eval_metrics=[], checkpoint_every=0,
            report_to="none", sample_steps=2, latent_scale_batches=1, log_every=1)


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("vae")
    config = build_config(AutoencoderTrainingConfig, dict(preset="tiny", output_dir=str(out), max_steps=2, batch_size=4))
    return train_autoencoder(config)


def tiny_config(tmp_path, vae_dir, name="run", **overrides):
    return build_config(TrainingConfig, {**TINY, "vae": vae_dir, "output_dir": str(tmp_path / name), **overrides})


def state_of(pipeline_dir):
    pipe = ConceptDiffusionPipeline.from_pretrained(pipeline_dir)
    return {f"{part}.{k}": v for part in ("concept_encoder", "unet") for k, v in getattr(pipe, part).state_dict().items()}, pipe


def test_first_stage_is_a_diffusers_vae(vae_dir):
    from diffusers import VQModel

    vae = VQModel.from_pretrained(vae_dir)
    assert vae.config.latent_channels == 3
    with open(os.path.join(os.path.dirname(vae_dir), "log.jsonl")) as file:
        assert [json.loads(line)["step"] for line in file] == [1, 2]  # the first and the last step


def test_train_writes_pipeline_card_samples_and_logs(tmp_path, vae_dir):
    result = train(tiny_config(tmp_path, vae_dir, max_steps=3, eval_metrics=["dci"], eval_samples=64))
    assert result.step == 3 and result.images_seen == 12
    assert set(result.metrics) >= {"dci.disentanglement", "dci.completeness"}
    run = tmp_path / "run"
    for path in ("pipeline/model_index.json", "pipeline/README.md", "pipeline/swap_grid.png", "samples/swap_final.png",
                 "curves.png", "log.jsonl", "run.json", "checkpoints/checkpoint-3/trainer_state.json"):
        assert (run / path).is_file(), path
    card = (run / "pipeline" / "README.md").read_text()
    assert "encdiff" in card and "dci" in card.lower()
    _, pipe = state_of(result.pipeline_dir)
    assert pipe.vae.config.scaling_factor != 1.0  # estimated 1/std of the latents
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]
    assert records[-1]["final"] and "dci.disentanglement" in records[-1]
    accuracy = {key: value for key, value in records[-1].items() if key.startswith("factor_accuracy.")}  # the concept-factor map
    assert len(accuracy) == 6 and all(0 <= value <= 1 for value in accuracy.values()), accuracy


def test_resumed_run_ends_with_the_same_weights(tmp_path, vae_dir):
    straight = train(tiny_config(tmp_path, vae_dir, "straight", max_steps=4, checkpoint_every=2))
    interrupted = train(tiny_config(tmp_path, vae_dir, "resumed", max_steps=2, checkpoint_every=2))
    assert interrupted.step == 2
    resumed = train(tiny_config(tmp_path, vae_dir, "resumed", max_steps=4, checkpoint_every=2, resume="latest"))
    assert resumed.step == 4
    expected, _ = state_of(straight.pipeline_dir)
    actual, _ = state_of(resumed.pipeline_dir)
    assert expected.keys() == actual.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=0, msg=name)
    checkpoints = sorted(os.listdir(tmp_path / "resumed" / "checkpoints"))
    assert checkpoints == ["checkpoint-2", "checkpoint-4"]  # whole checkpoints only, the last two kept


def test_resume_with_another_config_names_the_fields(tmp_path, vae_dir):
    train(tiny_config(tmp_path, vae_dir, max_steps=1))
    with pytest.raises(ValueError, match=r"differs in learning_rate.*seed"):
        train(tiny_config(tmp_path, vae_dir, max_steps=2, resume="latest", learning_rate=1e-3, seed=5))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(tiny_config(tmp_path, vae_dir, "fresh", max_steps=2, resume="latest"))


def test_checkpoint_from_before_a_new_field_resumes_at_its_default(tmp_path, vae_dir):
    train(tiny_config(tmp_path, vae_dir, max_steps=1, checkpoint_every=1))
    state_file = tmp_path / "run" / "checkpoints" / "checkpoint-1" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    del state["config"]["edge_loss_weight"]  # as an older version saved it
    state_file.write_text(json.dumps(state))
    with pytest.raises(ValueError, match=r"differs in edge_loss_weight: checkpoint 0.0 vs now 1.0"):
        train(tiny_config(tmp_path, vae_dir, max_steps=2, resume="latest", edge_loss_weight=1.0))
    assert train(tiny_config(tmp_path, vae_dir, max_steps=2, resume="latest")).step == 2


def test_progress_shows_the_time_left_past_an_hour(tmp_path, vae_dir, capsys):
    train(tiny_config(tmp_path, vae_dir, max_steps=2, max_minutes=120, log_every=1))
    assert re.search(r"left=1:\d\d:\d\d", capsys.readouterr().err)  # 1:59:.., not 59:.. with the hour dropped


def test_nan_loss_stops_with_step_and_keeps_last_checkpoint(tmp_path, vae_dir, monkeypatch):
    import concept_diffusion.training.trainer as trainer

    real_loss = trainer.diffusion_loss
    calls = []

    def loss_that_explodes(*args, **kwargs):
        calls.append(1)
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(trainer, "diffusion_loss", loss_that_explodes)
    with pytest.raises(TrainingDiverged, match=r"at step 3.*learning_rate.*checkpoint-2"):
        train(tiny_config(tmp_path, vae_dir, max_steps=5, checkpoint_every=2))
    assert (tmp_path / "run" / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file()
    assert not (tmp_path / "run" / "pipeline").exists()


def test_bad_setups_fail_before_training(tmp_path, vae_dir):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match="not writable"):
        train(tiny_config(tmp_path, vae_dir, output_dir=str(blocker / "run"), max_steps=1))
    with pytest.raises(ValueError, match="first stage.*train-vae"):
        train(tiny_config(tmp_path, None, max_steps=1))
    with pytest.raises(ValueError, match="unknown TrainingConfig field.*lerning_rate"):
        build_config(TrainingConfig, {"preset": "tiny", "lerning_rate": 1.0})
    with pytest.raises(ValueError, match="loss must be"):
        build_config(TrainingConfig, {"preset": "tiny", "loss": "huber"})


def images_only_dataset(folder, size, count=8):
    import datasets
    import PIL.Image

    rng = np.random.RandomState(0)
    images = [PIL.Image.fromarray(rng.randint(0, 255, (size, size, 3), dtype=np.uint8)) for _ in range(count)]
    datasets.Dataset.from_dict({"image": images}, features=datasets.Features({"image": datasets.Image()})).save_to_disk(folder)
    return str(folder)


def test_data_without_factors_trains_without_metrics(tmp_path, vae_dir, caplog):
    data = images_only_dataset(tmp_path / "images", 32)
    with caplog.at_level("WARNING"):
        result = train(tiny_config(tmp_path, vae_dir, data=data, max_steps=2, eval_metrics=["dci"]))
    assert result.step == 2 and result.metrics == {}
    assert sum("no factor" in r.getMessage() for r in caplog.records) == 1
    small = images_only_dataset(tmp_path / "small", 16)
    with pytest.raises(ValueError, match="16x16.*expects 32x32"):
        train(tiny_config(tmp_path, vae_dir, "small_run", data=small, max_steps=1))


def test_a_folder_of_image_files_without_labels_trains(tmp_path, vae_dir):
    import PIL.Image

    from concept_diffusion.training.data import load_training_data

    folder = tmp_path / "my-images"
    (folder / "holidays").mkdir(parents=True)  # a sub-folder: not a label here
    rng = np.random.RandomState(0)
    for i, (size, mode) in enumerate([((40, 30), "RGB"), ((50, 50), "L"), ((64, 48), "RGBA"), ((32, 32), "RGB")] * 2):
        channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
        pixels = rng.randint(0, 255, (size[1], size[0], channels), dtype=np.uint8).squeeze()
        PIL.Image.fromarray(pixels).save(folder / ("holidays" if i % 2 else "") / f"{i}.png")
    dataset, ground_truth = load_training_data(str(folder), 32, 3)
    assert ground_truth is None and len(dataset) == 8
    batch = dataset[range(8)]["images"]
    assert batch.shape == (8, 3, 32, 32) and -1 <= batch.min() and batch.max() <= 1  # cropped, resized, RGB
    result = train(tiny_config(tmp_path, vae_dir, data=str(folder), max_steps=2, eval_metrics=["dci"]))
    assert result.step == 2 and os.path.isdir(result.pipeline_dir)


def test_batches_are_a_function_of_seed_and_step():
    first = StepBatchSampler(100, 8, seed=3)
    batches = [b for b, _ in zip(first, range(30))]
    resumed = [b for b, _ in zip(StepBatchSampler(100, 8, seed=3, start=20), range(10))]
    assert batches[20:] == resumed
    epoch = sorted(i for b in batches[:12] for i in b)
    assert len(set(epoch)) == 96  # one epoch (12 batches of 8 of 100 images) has no repeats
    ranks = [[b for b, _ in zip(StepBatchSampler(100, 4, seed=3, num_processes=2, process_index=r), range(3))] for r in (0, 1)]
    assert [a + b for a, b in zip(*ranks)] == [b for b, _ in zip(StepBatchSampler(100, 8, seed=3), range(3))]


def test_cli_train(tmp_path, vae_dir, capsys):
    args = ["train", "--preset", "tiny", "--vae", vae_dir, "--output-dir", str(tmp_path / "cli"), "--max-steps", "1",
            "--batch-size", "4", "--eval-every", "0", "--report-to", "none", "--sample-steps", "1",
            "--eval-metrics", "dci", "--eval-samples", "64", "--ema-warmup", "false"]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "trained 1 steps" in out and "dci.disentanglement" in out


def test_two_processes_end_with_identical_weights(tmp_path, vae_dir):
    output = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "concept_diffusion.cli", "train", "--preset", "tiny", "--vae", vae_dir, "--output-dir", str(output),
               "--max-steps", "2", "--batch-size", "2", "--eval-every", "0", "--eval-metrics", "dci",
               "--eval-samples", "64", "--report-to", "none", "--sample-steps", "1", "--checkpoint-every", "0",
               # a learning rate that follows the clock from the first step: the replicas must agree on the time
               "--max-minutes", "60", "--lr-decay-start", "0", "--log-every", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((output / "run.json").read_text())
    assert summary["num_processes"] == 2
    assert len(summary["replica_digests"]) == 2 and len(set(summary["replica_digests"])) == 1
    assert summary["images_seen"] == 8  # 2 steps x 2 images x 2 processes


def test_quickstart_writes_everything_it_promises(tmp_path):
    from concept_diffusion.training.quickstart import quickstart

    sizes = {"factor_vae": {"num_train": 20, "num_eval": 10, "num_variance_estimate": 64, "batch_size": 8},
             "dci": {"num_train": 64, "num_test": 32}, "mig": {"num_train": 64}}
    # two single-threaded processes, as the quickstart trains on a 2-core CPU
    result = quickstart(str(tmp_path / "qs"), minutes=5, max_steps=2, batch_size=4, eval_every=0, eval_metrics=[],
                        report_to="none", metric_sizes=sizes, sample_steps=2, processes=2)
    for name in ("pipeline", "metrics", "swap", "traversal", "concept_factor_map", "model_card", "curves", "log"):
        assert os.path.exists(result.files[name]), name
    scores = json.loads((tmp_path / "qs" / "metrics.json").read_text())
    assert scores["steps"] == 2 and "factor_vae.eval_accuracy" in scores and "mig.discrete_mig" in scores
    assert scores["images_seen"] == 8  # 2 steps of 2 images in each of 2 processes: the batch of 4 is split
    assert json.loads((tmp_path / "qs" / "run.json").read_text())["num_processes"] == 2
    assert all(0 <= scores[f"factor_accuracy.{name}"] <= 1 for name in ("floor_hue", "shape", "orientation"))
    with pytest.raises(ValueError, match="batch_size 4 must split evenly over processes=3"):
        quickstart(str(tmp_path / "odd"), minutes=5, max_steps=1, batch_size=4, processes=3)
    assert "factor_vae.eval_accuracy" in (tmp_path / "qs" / "pipeline" / "README.md").read_text()
    last = json.loads((tmp_path / "qs" / "log.jsonl").read_text().splitlines()[-1])  # the curves end with these scores
    assert last["scored_by"] == "quickstart" and last["factor_vae.eval_accuracy"] == scores["factor_vae.eval_accuracy"]


@pytest.fixture
def fresh_accelerate_state():
    """accelerate keeps one process-wide state; a test that changes how it is launched starts and ends with a fresh one."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


def test_mixed_precision_comes_from_accelerate_launch_by_default(tmp_path, vae_dir, monkeypatch, fresh_accelerate_state):
    assert TrainingConfig().mixed_precision is None and AutoencoderTrainingConfig().mixed_precision is None
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # what `accelerate launch --mixed_precision bf16` sets
    train(tiny_config(tmp_path, vae_dir, max_steps=1, sample_steps=1))
    assert json.loads((tmp_path / "run" / "run.json").read_text())["mixed_precision"] == "bf16"


def test_compiled_models_are_saved_as_plain_diffusers_models(fresh_accelerate_state):
    # `accelerate launch --dynamo_backend inductor` hands the trainer torch.compile'd modules; what it saves
    # and samples must be the plain models (model_index.json once named "OptimizedModule").
    from accelerate import Accelerator

    from concept_diffusion.presets import build_pipeline
    from concept_diffusion.training.trainer import EncDiffParts

    pipe = build_pipeline("cpu")
    parts = EncDiffParts(Accelerator(cpu=True), torch.compile(pipe.concept_encoder), torch.compile(pipe.unet), *[None] * 7)
    encoder, unet = parts.unwrapped()
    assert encoder is pipe.concept_encoder and unet is pipe.unet


def test_compile_trains_the_same_function_and_saves_plain_models(tmp_path, vae_dir, fresh_accelerate_state):
    # About 2 minutes on 2 quiet CPU cores (118 s with a cold inductor cache), nearly all of it torch.compile
    # (inductor) compiling the tiny models' first step.
    from torch._dynamo.utils import counters

    from concept_diffusion.cli.train import train_config

    assert train_config(["--preset", "tiny", "--compile"]).compile and not train_config(["--preset", "tiny"]).compile
    eager = train(tiny_config(tmp_path, vae_dir, "eager", max_steps=2))
    counters.clear()
    compiled = train(tiny_config(tmp_path, vae_dir, "compiled", max_steps=2, compile=True))
    assert counters["stats"]["unique_graphs"] >= 2  # the encoder and the UNet ran compiled
    losses = [[json.loads(line)["loss"] for line in open(run.log_file) if '"loss"' in line] for run in (eager, compiled)]
    assert len(losses[1]) == 2
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)  # the same models on the same batches and noise
    (expected, _), (actual, pipe) = state_of(eager.pipeline_dir), state_of(compiled.pipeline_dir)
    assert actual.keys() == expected.keys()  # plain models: no torch.compile wrapper in the weights' names
    model_index = json.loads((tmp_path / "compiled" / "pipeline" / "model_index.json").read_text())
    assert model_index["unet"][1] == "UNet2DConditionModel" and model_index["concept_encoder"][1] == "ConceptEncoder"
    assert pipe.encode(np.zeros((2, 32, 32, 3), dtype=np.float32)).shape == (2, 4)


def test_compile_uses_cuda_graphs_only_where_they_hold():
    from concept_diffusion.training.runtime import compile_mode

    assert compile_mode("cuda") == "reduce-overhead"
    assert compile_mode("cuda", gradient_accumulation_steps=2) == "default"  # a replay would reuse accumulating gradients
    assert compile_mode("cuda", num_processes=2) == "default"
    assert compile_mode("cpu") == "default"


def test_first_stage_resumes_exactly(tmp_path):
    def run(name, max_steps, **overrides):
        config = build_config(AutoencoderTrainingConfig, dict(preset="tiny", output_dir=str(tmp_path / name), max_steps=max_steps,
                                                              batch_size=2, checkpoint_every=2, report_to="none", **overrides))
        return train_autoencoder(config)

    straight = run("straight", 3)
    run("resumed", 2)
    resumed = run("resumed", 3, resume="checkpoint-2")  # diffusers' spelling: a checkpoint's name in the run
    from safetensors.torch import load_file

    expected, actual = (load_file(os.path.join(folder, "diffusion_pytorch_model.safetensors")) for folder in (straight, resumed))
    assert expected.keys() == actual.keys()
    for name in expected:  # the same process, seed and batches: the bits are the point
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=0, msg=name)
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]  # the resumed run logs from where the first one stopped


def test_first_stage_trains_against_the_patch_discriminator_and_logs_psnr(tmp_path):
    def logged(name, **overrides):
        config = build_config(AutoencoderTrainingConfig, dict(preset="tiny", output_dir=str(tmp_path / name), max_steps=2,
                                                              batch_size=2, checkpoint_every=0, report_to="none", **overrides))
        train_autoencoder(config)
        return [json.loads(line) for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]

    adversarial = logged("adversarial")  # the released setting: weight 0.75 from step 0
    assert all(key in adversarial[-1] for key in ("psnr", "generator_loss", "discriminator_loss", "adversarial_weight"))
    assert adversarial[-1]["adversarial_weight"] > 0 and 0 < adversarial[-1]["psnr"] < 100
    plain = logged("plain", discriminator_weight=0.0)
    assert "psnr" in plain[-1] and "discriminator_loss" not in plain[-1]
    assert "discriminator_loss" not in logged("late", discriminator_start=5)[-1]


def test_non_finite_pixels_are_refused_before_the_device():
    from concept_diffusion.training.runtime import images_to_device

    images = torch.zeros(2, 3, 4, 4)
    assert images_to_device({"images": images}, "cpu", "my-data").shape == (2, 3, 4, 4)
    images[1, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="my-data gave a batch with NaN"):
        images_to_device({"images": images}, "cpu", "my-data")
