"""The diagnostics: the concept-factor map reads a disentangled code as one (and names each concept's
factor), and the training-step profiler runs end to end on the tiny preset."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from concept_diffusion.evaluation.concept_factors import concept_factor_map, concept_labels

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def grid_factors(count, sizes, seed=0):
    rng = np.random.RandomState(seed)
    return np.stack([rng.randint(0, size, count) for size in sizes], axis=1)


def test_concept_factor_map_finds_each_factor_in_its_concept():
    factors = grid_factors(600, [4, 5, 3])
    order = [2, 0, 1]  # concept i carries factor order[i], plus one concept of noise
    rng = np.random.RandomState(1)
    codes = np.concatenate([factors[:, order] + 0.1 * rng.rand(600, 3), rng.rand(600, 1)], axis=1)
    normalised, accuracy = concept_factor_map(codes, factors)
    assert normalised.shape == (4, 3) and accuracy.shape == (3,)
    for concept, factor in enumerate(order):
        assert normalised[concept, factor] > 0.95
        assert np.delete(normalised[:, factor], concept).max() < 0.1
    assert accuracy.min() > 0.95
    assert concept_labels(normalised, ["a", "b", "c"]) == ["c", "a", "b", "-"]  # the noise concept carries none


def test_hue_ring_needs_both_concepts_of_a_ring():
    from hue_ring import hue_rings

    factors = grid_factors(1500, [10, 10, 10])
    angles = 2 * np.pi * factors / 10  # each hue on a ring, as its two concepts hold it: (cos, sin)
    rng = np.random.RandomState(3)
    codes = np.concatenate([np.cos(angles), np.sin(angles)], axis=1) + 0.02 * rng.randn(1500, 6)
    rows = hue_rings(codes, factors, ["floor_hue", "wall_hue", "object_hue"])
    for factor, row in enumerate(rows):
        assert sorted(row["concepts"]) == [factor, factor + 3]
        assert row["accuracy_both"] > 0.98
        assert max(row["accuracy_first"], row["accuracy_second"]) < 0.7  # cos alone folds the ring: hue h and -h meet


def test_concept_factor_map_of_a_mixed_code_is_smeared():
    factors = grid_factors(600, [6, 6])
    codes = factors @ np.array([[1.0, 1.0], [1.0, -1.0]]) + 0.01 * np.random.RandomState(2).rand(600, 2)
    normalised, accuracy = concept_factor_map(codes, factors)
    assert normalised.max() < 0.8  # no concept holds a factor alone
    assert accuracy.min() > 0.9  # yet together they still predict both


def test_train_step_speed_runs_on_the_tiny_preset(tmp_path):
    from train_step_speed import main

    out = tmp_path / "speed.json"
    variants = "2026-11-27,e6c087c,after,after + bf16,after + channels_last"
    assert main(["--preset", "tiny", "--batch-size", "4", "--steps", "1", "--rounds", "1", "--variants", variants, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["phase_seconds"]) == {"data", "first_stage", "forward", "backward", "optimizer", "ema"}
    assert set(result["images_per_second"]) == set(variants.split(","))
    assert all(value > 0 for value in result["images_per_second"].values())
    ops = {name: host["ops"] for name, host in result["host"].items()}  # per step, from torch's profiler
    assert result["errors"] == {} and ops["2026-11-27"] > ops["after"] and ops["after + bf16"] > ops["after"]  # per-parameter updates; casts


def test_cpu_ablation_arms_change_only_their_configs(tmp_path):
    import cpu_ablation

    from concept_diffusion.presets import build_pipeline

    base = build_pipeline("cpu")
    vae = tmp_path / "vae"
    vae.mkdir()
    (vae / "config.json").write_text(json.dumps(dict(build_pipeline("shapes3d").vae.config)))
    for arm, (_, edits) in cpu_ablation.ARMS.items():
        pipe = build_pipeline(cpu_ablation.arm_preset(arm, str(tmp_path / "work"), str(vae)))
        for component in ("concept_encoder", "unet"):
            changed = {key for key, value in getattr(pipe, component).config.items() if value != getattr(base, component).config[key]}
            assert changed == set(edits.get(component, {})), (arm, component, changed)
        assert (pipe.vae is not None) == ("model_index" in edits), arm
    latent = build_pipeline(cpu_ablation.arm_preset("latent_64x64", str(tmp_path / "work"), str(vae)))
    assert latent.vae.config.sample_size == latent.concept_encoder.config.sample_size == 64
    assert latent.unet.config.sample_size * 4 == 64  # the 16x16 latents of the 4x first stage
    grey = build_pipeline(cpu_ablation.arm_preset("concepts_20", str(tmp_path / "work"), channels=1))  # dSprites' one channel
    assert grey.concept_encoder.config.in_channels == grey.unet.config.in_channels == grey.unet.config.out_channels == 1
    assert grey.concept_encoder.config.num_concepts == 20  # the arm's own edit kept
    assert cpu_ablation.run_folder("w", "base", 0, 100000, data="dsprites-procedural") == "w/base-seed0-100k-dsprites-procedural"


def test_cpu_ablation_report_tables_and_draws_recorded_runs(tmp_path, capsys):
    import cpu_ablation

    factors = ["floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"]
    runs = [{"arm": arm, "seed": seed, "images": 20000, "ms_per_image_one_core": 15.0,
             "scores": {key: 0.1 * (seed + 1) + (0.5 if arm == "wide" else 0.0) for key in cpu_ablation.HEADLINE},
             "factor_accuracy": dict(zip(factors, [1.0, 1.0, 0.9, 0.2, 0.5, 0.1]))}
            for arm in ("base", "wide") for seed in (0, 1)]
    out = tmp_path / "ablation.json"
    out.write_text(json.dumps({"runs": runs}))
    assert cpu_ablation.main(["--report", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| wide | 20,000 | one CPU core each | 2 | 0.650 (0.60..0.70)" in table  # mean (min..max) over the seeds
    assert "| base | 20,000 | one CPU core each | 2 | 0.150 (0.10..0.20)" in table
    assert (tmp_path / "ablation.png").stat().st_size > 10_000


def test_cpu_ablation_trains_each_arm_with_its_flags_and_budget(tmp_path):
    import cpu_ablation

    args = cpu_ablation.parse_args(["--arms", "base,skip_dropout", "--seeds", "0", "--images", "100000", "--eval-every", "500",
                                    "--max-minutes", "3", "--work-dir", str(tmp_path)])
    runs = [(arm, 0, cpu_ablation.run_folder(str(tmp_path), arm, 0, args.images)) for arm in args.arms]
    assert runs[0][2].endswith("base-seed0-100k") and cpu_ablation.run_folder("w", "base", 1, 20000) == "w/base-seed1"
    commands = {name: command for name, command, _, _ in cpu_ablation.train_commands(args, runs)}
    dropout = commands["skip_dropout seed 0"]
    assert dropout[dropout.index("--max-steps") + 1] == "3125" and dropout[dropout.index("--eval-every") + 1] == "500"
    assert float(dropout[dropout.index("--max-minutes") + 1]) == 3 and dropout[-2:] == ["--skip-dropout", "0.2"]
    assert "--skip-dropout" not in commands["base seed 0"] and "--resume" not in commands["base seed 0"]
    (Path(runs[0][2]) / "checkpoints" / "checkpoint-500").mkdir(parents=True)  # a batch stopped after 500 steps
    resumed = {name: command for name, command, _, _ in cpu_ablation.train_commands(args, runs)}["base seed 0"]
    assert resumed[-2:] == ["--resume", "latest"] and resumed[resumed.index("--checkpoint-every") + 1] == "500"


def test_cpu_ablation_base_stays_the_old_recipe_and_the_winner_is_the_cpu_preset(tmp_path):
    """The preset now trains with the winning arm; the recorded arms must still mean "the old recipe + one change"."""
    import cpu_ablation
    from concept_diffusion.cli.train import train_config

    def config(*flags):
        return train_config(["--preset", "cpu", "--output-dir", str(tmp_path), *flags])

    preset, base = config(), config(*cpu_ablation.arm_flags("base"))
    winner = config(*cpu_ablation.arm_flags("edge_loss_x10_t_mean_2_grad_x100"))
    previous = config(*cpu_ablation.arm_flags("edge_loss_x10_t_mean_2"))

    def recipe(c):
        return c.timestep_logit_mean, c.edge_loss_weight, c.gradient_loss_weight

    assert recipe(base) == (1.0, 0.0, 0.0)
    assert recipe(preset) == recipe(winner) == (2.0, 10.0, 100.0)
    assert recipe(previous) == (2.0, 10.0, 0.0)  # the recipe before the gradient loss keeps its meaning
    dropout = config(*cpu_ablation.arm_flags("skip_dropout"))
    assert (dropout.skip_dropout, dropout.timestep_logit_mean, dropout.edge_loss_weight) == (0.2, 1.0, 0.0)


def test_first_stage_quality_reports_held_out_psnr_and_a_picture(tmp_path):
    import first_stage_quality

    from concept_diffusion.presets import build_pipeline

    from concept_diffusion.training.discriminator import psnr

    images = torch.zeros(2, 3, 4, 4)
    assert torch.allclose(psnr(images + 0.2, images, reduce=False), torch.full((2,), 20.0))  # MSE 0.04 at peak-to-peak 2
    assert first_stage_quality.reconstruct(build_pipeline("tiny").vae, np.full((3, 32, 32, 3), 0.5, np.float32)).shape == (3, 3, 32, 32)
    run = tmp_path / "stage1"
    build_pipeline("tiny").vae.save_pretrained(run / "vae")
    (run / "log.jsonl").write_text("".join(json.dumps({"step": step, "images_seen": 8 * step, "loss": 1.0 / step, "psnr": 10.0 + step})
                                           + "\n" for step in range(1, 21)))
    assert first_stage_quality.main([str(run / "vae"), "--images", "16"]) == 0
    result = json.loads((run / "first_stage_quality.json").read_text())
    assert result["images"] == 16 and 0 < result["psnr_p5_db"] <= result["psnr_mean_db"] < 60  # an untrained vae is far from exact
    assert result["training_steps"] == 20 and result["training_batch_psnr_last_db"] == 25.5  # mean of the last ten batches
    assert (run / "first_stage_quality.png").stat().st_size > 5_000 and (run / "first_stage_quality_curves.png").is_file()


def test_training_curves_group_seeds_and_table_the_scores_at_budgets(tmp_path, capsys):
    import training_curves

    for arm, seed, offset in (("base", 0, 0.0), ("base", 1, 0.1), ("skip_dropout", 0, 0.3)):
        run = tmp_path / f"{arm}-seed{seed}-300k"
        run.mkdir()
        records = [{"step": 1, "images_seen": 32, "loss": 1.0}]
        records += [{"step": k, "images_seen": 100_000 * k, **{key: 0.1 * k + offset for key in training_curves.SCORES}} for k in (1, 2, 3)]
        (run / "log.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    out = tmp_path / "curves.png"
    assert training_curves.main([str(path) for path in sorted(tmp_path.glob("*-300k"))] + ["--at", "150000,300000", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| base-300k | 2 | 150,000 | 0.150 (0.10..0.20)" in table  # the last evaluation at or before 150k, over the seeds
    assert "| skip_dropout-300k | 1 | 300,000 | 0.600 (0.60..0.60)" in table
    assert out.stat().st_size > 20_000 and json.loads((tmp_path / "curves.json").read_text())["rows"]
    assert training_curves.group_name(str(tmp_path / "long" / "seed1")) == "long"


def test_arm_cost_times_each_arms_own_training_step(tmp_path, capsys):
    import arm_cost

    out = tmp_path / "cost.json"
    assert arm_cost.main(["--arms", "skip_dropout", "--steps", "1", "--rounds", "2", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["ms_per_image"]) == {"base", "skip_dropout"}  # the base is always timed: the ratios need it
    assert all(len(rounds) == 2 and min(rounds) > 0 for rounds in result["rounds"].values())
    assert "| skip_dropout |" in capsys.readouterr().out


def test_factor_probe_reads_factors_and_measures_each_factors_share(tmp_path):
    import factor_probe

    from concept_diffusion.presets import build_pipeline

    vae = tmp_path / "vae"
    build_pipeline("tiny").vae.save_pretrained(vae)
    out = tmp_path / "probe.json"
    assert factor_probe.main(["--sizes", "16", "--images", "128", "--test", "20", "--evaluations", "2", "--pairs", "40",
                              "--first-stage", str(vae), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [point["images"] for point in result["probe"][0]["curve"]] == [64, 128]
    assert set(result["share"]) == {"16x16 pixels", "32x32 images, first-stage latents"}
    pixels = result["share"]["16x16 pixels"]
    assert pixels["floor_hue"] > pixels["orientation"] > 0  # the floor is most of the image, the object's turn a little
    assert (tmp_path / "probe.png").is_file()

    shares_only = tmp_path / "share.json"  # no probe; the loss weighted toward edges pays the object more
    assert factor_probe.main(["--sizes", "16", "--images", "0", "--pairs", "40", "--edge-loss-weights", "10",
                              "--gradient-loss-weights", "1000", "--out", str(shares_only)]) == 0
    result = json.loads(shares_only.read_text())
    assert result["probe"] == [] and set(result["share"]) == {
        "16x16 pixels", "16x16 pixels, edge_loss_weight 10", "16x16 pixels, gradient_loss_weight 1000",
        "16x16 pixels, edge_loss_weight 10, gradient_loss_weight 1000"}
    weighted = result["share"]["16x16 pixels, edge_loss_weight 10"]
    assert weighted["scale"] / weighted["floor_hue"] > 2 * pixels["scale"] / pixels["floor_hue"]
    gradient = result["share"]["16x16 pixels, gradient_loss_weight 1000"]  # the intensity gradient pays the turn most
    assert gradient["orientation"] / gradient["floor_hue"] > 2 * weighted["orientation"] / weighted["floor_hue"]


def test_encoder_probe_compares_a_trained_encoder_with_its_random_initialisation(tmp_path, capsys):
    import encoder_probe

    from concept_diffusion import ConceptEncoder

    torch.manual_seed(1)
    ConceptEncoder(sample_size=32, num_concepts=4, token_dim=8, width=16).save_pretrained(tmp_path / "run" / "pipeline" / "concept_encoder")
    out = tmp_path / "probe.json"
    assert encoder_probe.main([str(tmp_path / "run"), "--train", "600", "--test", "200", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(row["encoder"], row["features"], row["dims"]) for row in rows] == [
        ("random initialisation", "trunk", 64), ("random initialisation", "concepts", 4), ("run", "trunk", 64), ("run", "concepts", 4)]
    for row in rows:  # the floor is most of the image: even random features tell its hue far above chance (0.1)
        assert row["accuracy"]["floor_hue"] > (0.5 if row["features"] == "trunk" else 0.25), row
    assert "| run | concepts | 4 |" in capsys.readouterr().out


def test_oracle_decoder_draws_from_true_factors_and_reads_them_back(tmp_path):
    import oracle_decoder

    out = tmp_path / "oracle.json"
    assert oracle_decoder.main(["--images", "64", "--evaluations", "2", "--test", "8", "--steps", "2", "--probe-images", "640",
                                "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [point["images"] for point in result["rendered"]] == [32, 64]
    assert all(len(point["accuracy"]) == len(result["factor_names"]) == 6 for point in result["rendered"])
    assert set(result["probe_on_real_images"]["accuracy"]) == set(result["factor_names"])
    assert (tmp_path / "oracle.png").is_file()


def test_the_fidelity_reader_reads_real_images_and_the_benchmark_scores_a_model(tmp_path, shipped_pipe, capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "fidelity"))
    import fidelity
    from factor_reader import load_reader

    from concept_diffusion import load_ground_truth

    reader = load_reader()  # the shipped asset
    assert min(reader.accuracy.values()) >= 0.98  # measured on 5,000 held-out images when it was trained
    data = load_ground_truth("shapes3d-procedural", image_size=32)
    factors, images = fidelity.held_out(data, 200, seed=5)
    assert (reader.read(images) == factors).mean(0).min() >= 0.95  # and it reads images it never saw, on this CPU
    source, reference = fidelity.differing_pairs(data, factor=4, count=50, seed=0)
    assert (source[:, 4] != reference[:, 4]).all()

    out = tmp_path / "out"
    result = fidelity.main(["--images", "6", "--steps", "3", "--pairs", "3", "--traversal-images", "2", "--values", "2",
                            "--edit-steps", "3", "--map-points", "300", "--name", "tiny", "--out-dir", str(out)])
    assert json.loads((out / "fidelity_tiny.json").read_text())["command"].startswith("python benchmarks/fidelity/fidelity.py")
    fresh, inverted = result["reconstruction"]
    assert (fresh["noise"], inverted["noise"]) == ("fresh", "inverted")
    assert inverted["psnr"] > fresh["psnr"] + 5 and inverted["ssim"] > fresh["ssim"]  # inversion keeps the image
    swapped = {(row["factor"], row["noise"]) for row in result["swaps"] if "noise" in row}
    assert ("floor_hue", "fresh") in swapped and ("floor_hue", "inverted") in swapped  # the shipped model's floor concepts
    assert set(result["reencoding_error"]) == {"fresh", "inverted"} and result["traversals"]
    assert (out / "fidelity_tiny.png").is_file() and "re-encoding error" in capsys.readouterr().out


def test_sample_quality_reads_samples_of_each_prior_kind(tmp_path, capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "prior"))
    import sample_quality

    out = tmp_path / "out"
    result = sample_quality.main(["--num-samples", "6", "--steps", "2", "--prior-images", "200", "--name", "tiny",
                                  "--out-dir", str(out)])
    assert [row["prior"] for row in result["rows"]] == ["empirical", "independent", "gmm"]
    for row in result["rows"]:
        assert 0 <= row["validity"] <= 1 and row["distinct_combinations"] <= 6 and row["max_pair_mi"] >= 0
    assert result["uniform_reference"]["expected_distinct"] == pytest.approx(6, abs=1e-3)  # 480,000 combinations
    assert (out / "sample_quality_tiny.json").is_file() and (out / "sample_quality_tiny.png").is_file()
    assert "max pair MI" in capsys.readouterr().out
