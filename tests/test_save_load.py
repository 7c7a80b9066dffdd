import json
import sys
import textwrap

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline

from concept_diffusion import ConceptDiffusionPipeline, build_pipeline



def assert_same_images(actual, expected):
    """Outputs of separately built or loaded models: equal to 1e-5 (images in [0, 1]), not bit for bit,
    because kernels differ between CPUs (an AMD EPYC differed by 2e-8 where others gave 0)."""
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-5)


def reconstruct(pipe, images):
    pipe.set_progress_bar_config(disable=True)
    return pipe(images=images, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np").images


@pytest.fixture(scope="module")
def images():
    return np.random.RandomState(0).rand(2, 32, 32, 3).astype(np.float32)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, images):
    folder = tmp_path_factory.mktemp("saved") / "tiny-pipeline"
    pipe = build_pipeline("tiny", seed=1)
    pipe.save_pretrained(folder)
    return folder, reconstruct(pipe, images)


def files_of(folder):
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def test_portable_layout(saved):
    folder, _ = saved
    assert files_of(folder) == [
        "concept_encoder/concept_encoder.py",
        "concept_encoder/config.json",
        "concept_encoder/diffusion_pytorch_model.safetensors",
        "model_index.json",
        "pipeline.py",
        "scheduler/scheduler_config.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
    ]
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline", "ConceptDiffusionPipeline"]
    assert index["concept_encoder"] == ["concept_encoder", "ConceptEncoder"]
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    import concept_diffusion.pipelines.pipeline_concept_diffusion as pipeline_module

    with open(pipeline_module.__file__) as source:
        assert (folder / "pipeline.py").read_text() == source.read()


def test_loading_logs_no_config_warning(saved):
    """diffusers writes `auto_map` into the encoder's config.json for remote code; reading it back must not warn."""
    import logging

    folder, _ = saved
    assert "auto_map" in json.loads((folder / "concept_encoder" / "config.json").read_text())
    records = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = records.append
    diffusers_logger = logging.getLogger("diffusers")  # diffusers' own handler does not propagate to pytest's
    diffusers_logger.addHandler(handler)
    try:
        ConceptDiffusionPipeline.from_pretrained(folder)
        DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
    finally:
        diffusers_logger.removeHandler(handler)
    assert [record.getMessage() for record in records] == []


def test_package_load_never_runs_folder_code(saved, images, tmp_path):
    folder, expected = saved
    poisoned = tmp_path / "poisoned"
    import shutil

    shutil.copytree(folder, poisoned)
    (poisoned / "pipeline.py").write_text("raise RuntimeError('repo code ran')\n")
    (poisoned / "concept_encoder" / "concept_encoder.py").write_text("raise RuntimeError('repo code ran')\n")
    loaded = ConceptDiffusionPipeline.from_pretrained(poisoned)
    assert type(loaded) is ConceptDiffusionPipeline
    assert_same_images(reconstruct(loaded, images), expected)


def test_remote_code_load_without_package_and_resave(saved, images, tmp_path, run_without_package):
    folder, expected = saved
    np.save(tmp_path / "images.npy", images)
    script = textwrap.dedent(
        f"""
        import numpy as np, torch
        from diffusers import DiffusionPipeline
        try:
            import concept_diffusion
            raise SystemExit("concept_diffusion should not be importable here")
        except ImportError:
            pass
        pipe = DiffusionPipeline.from_pretrained({str(folder)!r}, trust_remote_code=True)
        pipe.set_progress_bar_config(disable=True)
        images = np.load({str(tmp_path / "images.npy")!r})
        out = pipe(images=images, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np")
        np.save({str(tmp_path / "remote.npy")!r}, out.images)
        pipe.save_pretrained({str(tmp_path / "resaved")!r})
        print(type(pipe).__module__)
        from diffusers import AutoModel
        encoder = AutoModel.from_pretrained({str(folder / "concept_encoder")!r}, trust_remote_code=True)
        x = torch.from_numpy(images).permute(0, 3, 1, 2) * 2 - 1
        np.save({str(tmp_path / "remote_concepts.npy")!r}, encoder(x).concepts.detach().numpy())
        print(type(encoder).__name__)
        """
    )
    result = run_without_package(script)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "diffusers_modules" in result.stdout and "ConceptEncoder" in result.stdout
    assert_same_images(np.load(tmp_path / "remote.npy"), expected)
    local_concepts = ConceptDiffusionPipeline.from_pretrained(folder).encode(images).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "remote_concepts.npy"), local_concepts, rtol=1e-6, atol=1e-6)
    resaved = tmp_path / "resaved"
    assert files_of(resaved) == files_of(folder)
    index = json.loads((resaved / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline", "ConceptDiffusionPipeline"]
    assert index["concept_encoder"] == ["concept_encoder", "ConceptEncoder"]
    assert (resaved / "pipeline.py").read_text() == (folder / "pipeline.py").read_text()
    reloaded = ConceptDiffusionPipeline.from_pretrained(resaved)
    assert_same_images(reconstruct(reloaded, images), expected)


def test_plain_diffusers_needs_trust_remote_code(saved):
    folder, _ = saved
    with pytest.raises(ValueError, match="trust_remote_code"):
        DiffusionPipeline.from_pretrained(folder)


def test_save_replaces_previous_save_only_when_complete(saved, tmp_path, monkeypatch, images):
    folder = tmp_path / "pipe"
    first = build_pipeline("tiny", seed=1)
    first.save_pretrained(folder)
    second = build_pipeline("tiny", seed=2)

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(DiffusionPipeline, "save_pretrained", fail)
    with pytest.raises(OSError, match="disk full"):
        second.save_pretrained(folder)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]  # no staging folder left behind
    assert_same_images(reconstruct(ConceptDiffusionPipeline.from_pretrained(folder), images), saved[1])
    second.save_pretrained(folder)
    assert not np.allclose(reconstruct(ConceptDiffusionPipeline.from_pretrained(folder), images), saved[1], atol=1e-3)


def test_components_can_be_replaced_and_dtype_set(saved):
    from diffusers import DDPMScheduler

    folder, _ = saved
    scheduler = DDPMScheduler(num_train_timesteps=10)
    loaded = ConceptDiffusionPipeline.from_pretrained(folder, scheduler=scheduler, torch_dtype=torch.float64)
    assert loaded.scheduler is scheduler
    assert loaded.unet.dtype == torch.float64
    with pytest.raises(ValueError, match="unexpected arguments.*bogus"):
        ConceptDiffusionPipeline.from_pretrained(folder, bogus=1)


def test_bad_folders(saved, tmp_path):
    import shutil

    folder, _ = saved
    with pytest.raises(FileNotFoundError, match="no model_index.json"):
        ConceptDiffusionPipeline.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        ConceptDiffusionPipeline.from_pretrained(tmp_path / "missing" / "deeper")

    missing_unet = tmp_path / "missing_unet"
    shutil.copytree(folder, missing_unet)
    shutil.rmtree(missing_unet / "unet")
    with pytest.raises(FileNotFoundError, match="no unet/ folder"):
        ConceptDiffusionPipeline.from_pretrained(missing_unet)

    other = tmp_path / "other"
    shutil.copytree(folder, other)
    index = json.loads((other / "model_index.json").read_text())
    index["_class_name"] = "StableDiffusionPipeline"
    (other / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="not a ConceptDiffusionPipeline"):
        ConceptDiffusionPipeline.from_pretrained(other)

    pickled = tmp_path / "pickled"
    shutil.copytree(folder, pickled)
    weights = pickled / "unet" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(ValueError, match=r"unet has pickled weights only \(diffusion_pytorch_model.bin\).*safetensors"):
        ConceptDiffusionPipeline.from_pretrained(pickled)

    with pytest.raises(ValueError, match="safetensors only"):
        build_pipeline("tiny").save_pretrained(tmp_path / "x", safe_serialization=False)


def test_remote_code_modules_import_only_torch_diffusers_and_the_standard_library():
    """The two files copied into Hub repos run where concept-diffusion is not installed, and the
    package's hub code calls them, never the other way round (no import circle, no string imports)."""
    import ast
    import importlib

    allowed = {"torch", "diffusers", "numpy", "PIL"} | set(sys.stdlib_module_names)
    for name in ("concept_diffusion.models.concept_encoder", "concept_diffusion.models.concept_prior",
                 "concept_diffusion.pipelines.pipeline_concept_diffusion"):
        source = open(importlib.import_module(name).__file__).read()
        roots = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                roots |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots.add((node.module or "").split(".")[0])
        # importlib is refused too: a string import of the package would hide the dependency.
        assert roots <= allowed - {"importlib"}, (name, roots - allowed)


def test_hub_code_does_not_import_the_pipelines():
    """Imports flow models -> hub -> pipelines: hub/ loads components and pushes any pipeline it is given."""
    import ast
    from pathlib import Path

    import concept_diffusion.hub

    for path in Path(concept_diffusion.hub.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("concept_diffusion.pipelines"), path.name
