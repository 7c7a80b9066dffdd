"""benchmarks/gpu_benchmarks.sh is the one command a GPU session runs; its CPU smoke mode keeps it working here."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_script_runs_end_to_end_in_its_cpu_smoke_mode(tmp_path):
    env = {**os.environ, "DEVICE": "cpu", "PRESET": "tiny", "TRAIN_MINUTES": "0.05", "VAE_STEPS": "2", "LOOP_PRESETS": "tiny:8:tiny",
           "LOOP_STEPS": "2", "LOOP_ROUNDS": "1", "LOOP_PHASE_STEPS": "1", "LOOP_VARIANTS": "e6c087c,after", "ENCODE_IMAGES": "64",
           "BATCH_SIZE": "8", "MIXED_PRECISION": "no", "WORKERS": "0", "RESULTS_DIR": str(tmp_path / "results"),
           "WORK_DIR": str(tmp_path / "work"), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_benchmarks.sh")], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = tmp_path / "results"
    loop = json.loads((results / "train_step_speed_cpu_tiny.json").read_text())
    assert loop["errors"] == {} and set(loop["images_per_second"]) == {"e6c087c", "after"}
    for name in ("e6c087c", "after"):  # the host's cost of a step, measured on a CPU too
        assert loop["host"][name]["host_ms"] > 0 and loop["host"][name]["ops"] > 100
    assert min(loop["loader_images_per_second"].values()) > 0 and loop["encoding"]["images_per_second"] > 0
    assert "threads:" in (results / "train_step_speed_cpu_tiny.log").read_text()  # the thread settings are printed
    efficiency = json.loads((results / "train_efficiency_cpu-tiny.json").read_text())
    assert efficiency["first_stage"] is not None  # stage 1 ran before EncDiff
    assert {run["model"] for run in efficiency["runs"]} == {"encdiff", "beta_vae", "beta_tcvae"}
    first_stage = json.loads((results / "first_stage_quality_cpu-tiny.json").read_text())
    assert first_stage["psnr_mean_db"] > 0 and (results / "first_stage_quality_cpu-tiny.png").is_file()


def test_gpu_recipe_script_runs_end_to_end_in_its_cpu_smoke_mode(tmp_path):
    env = {**os.environ, "DEVICE": "cpu", "ARMS": "base", "SEEDS": "0", "LATENT_ARM": "", "IMAGES": "64", "LONG_ARMS": "skip_dropout",
           "LONG_IMAGES": "64", "LONG_BATCH": "32", "EVAL_IMAGES": "1000000", "EVAL_SAMPLES": "64", "ORACLE_IMAGES": "64",
           "ORACLE_PROBE_IMAGES": "64", "ORACLE_TEST": "4", "RESULTS_DIR": str(tmp_path / "results"), "WORK_DIR": str(tmp_path / "work"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_recipe.sh")], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    import tarfile

    with tarfile.open(tmp_path / "results" / "recipe_runs.tar") as packed:
        names = packed.getnames()
    assert "./arms/base-seed0-0k/pipeline/concept_encoder/diffusion_pytorch_model.safetensors" in names  # what scoring needs
    assert "./long/skip_dropout-seed0-0k/pipeline/unet/diffusion_pytorch_model.safetensors" in names  # the long runs whole
    assert not any("checkpoints" in name or "arms/base-seed0-0k/pipeline/unet" in name for name in names)
    assert json.loads((tmp_path / "results" / "oracle_decoder.json").read_text())["rendered"]
