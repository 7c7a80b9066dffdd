"""Sharing on the Hub against the local test server: push, card, load both ways, failures, CLI."""

import argparse
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from huggingface_hub import HfApi, ModelCard

from concept_diffusion import ConceptDiffusionPipeline, build_pipeline
from concept_diffusion.cli import hub as hub_cli
from concept_diffusion.hub import (
    HubError,
    check_pipeline_repo,
    pull_pipeline,
    push_encoder_to_hub,
    push_folder_to_hub,
    render_model_card,
)

# As concept_diffusion.evaluate returns them, and one nested result as a user may pass it.
METRICS = {"factor_vae.eval_accuracy": 0.91, "mig.discrete_mig": 0.33, "dci": {"disentanglement": 0.62, "completeness": 0.58}}
IMAGES = np.random.default_rng(0).random((2, 32, 32, 3))


@pytest.fixture(scope="module")
def pipe():
    return build_pipeline("tiny", seed=0)


def assert_same_images(actual, expected):
    """Outputs of separately loaded models: equal to 1e-5 (images in [0, 1]), not bit for bit,
    because kernels differ between CPUs (an AMD EPYC differed by 2e-8 where others gave 0)."""
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-5)


def reconstruct(pipeline) -> np.ndarray:
    return pipeline(images=IMAGES, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np").images


def run_cli(argv) -> int:
    parser = argparse.ArgumentParser()
    hub_cli.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_push_uploads_layout_weights_and_card_in_one_commit(pipe, hub_server, hub_repo_id, tmp_path):
    grid = pipe.swap(IMAGES, IMAGES, concept_indices=[0], num_inference_steps=1).grid
    url = pipe.push_to_hub(
        hub_repo_id, commit_message="EncDiff tiny", metrics=METRICS, dataset="shapes3d-procedural",
        training_config={"learning_rate": 2.56e-4, "batch_size": 128}, swap_grid=grid,
        save_directory=tmp_path / "saved",
    )
    api = HfApi()
    commits = api.list_repo_commits(hub_repo_id)
    assert [c.title for c in commits] == ["EncDiff tiny", "initial commit"]
    assert url.endswith(commits[0].commit_id)
    files = set(api.list_repo_files(hub_repo_id))
    assert {"model_index.json", "pipeline.py", "concept_encoder/concept_encoder.py", "README.md", "swap_grid.png",
            "unet/diffusion_pytorch_model.safetensors", "concept_encoder/diffusion_pytorch_model.safetensors"} <= files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pkl"))]
    assert (tmp_path / "saved" / "README.md").is_file()  # the user's save_directory is kept

    card = ModelCard.load(hub_repo_id)
    card.validate()
    assert card.data.library_name == "diffusers"
    assert {"encdiff", "disentanglement", "concept-tokens"} <= set(card.data.tags)
    assert card.data.datasets == ["shapes3d-procedural"]
    assert card.data.license == "apache-2.0"
    scores = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert scores == {"factor_vae.eval_accuracy": 0.91, "mig.discrete_mig": 0.33, "dci.disentanglement": 0.62,
                      "dci.completeness": 0.58}
    for text in ("trust_remote_code=True", "ConceptDiffusionPipeline.from_pretrained", "pipe.swap", "pipe.traverse", "pipe.invert",
                 "./swap_grid.png", "learning_rate", "| DCI disentanglement | 0.620 |", "| MIG | 0.330 |", "Limitations", "@inproceedings"):
        assert text in card.text, text

    # A second push replaces the model in one more commit and removes files the new save lacks.
    api.upload_file(path_or_fileobj=b"stale", path_in_repo="unet/old.txt", repo_id=hub_repo_id)
    pipe.push_to_hub(hub_repo_id)
    assert "unet/old.txt" not in api.list_repo_files(hub_repo_id)
    assert "swap_grid.png" not in api.list_repo_files(hub_repo_id)


def test_push_encoder(pipe, hub_repo_id):
    from concept_diffusion import ConceptEncoder

    push_encoder_to_hub(pipe.concept_encoder, hub_repo_id, metrics={"mig.discrete_mig": 0.5})
    files = set(HfApi().list_repo_files(hub_repo_id))
    assert {"config.json", "diffusion_pytorch_model.safetensors", "concept_encoder.py", "README.md"} <= files
    card = ModelCard.load(hub_repo_id)
    assert "concept-encoder" in card.data.tags and "ConceptEncoder.from_pretrained" in card.text
    loaded = ConceptEncoder.from_pretrained(hub_repo_id)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    # A loaded copy, not the same object: equal to 1e-6 of the values' scale (AMD EPYC: 2.2e-8 apart).
    expected = pipe.concept_encoder(x).concepts.detach()
    torch.testing.assert_close(loaded(x).concepts, expected, rtol=1e-6, atol=1e-6 * float(expected.abs().max()))


def test_plain_encoder_push_keeps_its_code(pipe, hub_repo_id):
    """`encoder.push_to_hub` is diffusers' own (the remote-code module imports no hub code): it still
    uploads the safetensors weights, the config's auto_map and the module beside them."""
    pipe.concept_encoder.push_to_hub(hub_repo_id)
    files = set(HfApi().list_repo_files(hub_repo_id))
    assert {"config.json", "diffusion_pytorch_model.safetensors", "concept_encoder.py"} <= files
    from huggingface_hub import hf_hub_download

    with open(hf_hub_download(hub_repo_id, "config.json")) as file:
        assert json.load(file)["auto_map"] == {"AutoModel": "concept_encoder.ConceptEncoder"}


def test_round_trip_without_package_then_with_package(pipe, hub_server, hub_repo_id, tmp_path):
    """push -> load without the package (subprocess, remote code) -> load with it -> identical outputs."""
    pipe.push_to_hub(hub_repo_id)
    revision = HfApi().model_info(hub_repo_id).sha
    np.save(tmp_path / "images.npy", IMAGES)
    script = textwrap.dedent(f"""
        import sys
        sys.modules["concept_diffusion"] = None  # a user without the package
        import numpy as np, torch
        from diffusers import DiffusionPipeline
        try:
            import concept_diffusion
            raise SystemExit("concept_diffusion is importable")
        except ImportError:
            pass
        pipe = DiffusionPipeline.from_pretrained({hub_repo_id!r}, trust_remote_code=True, revision={revision!r})
        assert type(pipe).__module__.startswith("diffusers_modules"), type(pipe).__module__
        images = np.load({str(tmp_path / "images.npy")!r})
        out = pipe(images=images, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np")
        np.save({str(tmp_path / "remote.npy")!r}, out.images)
    """)
    env = {**os.environ, "HF_HOME": str(tmp_path / "other-user-hf-home")}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]

    loaded = ConceptDiffusionPipeline.from_pretrained(hub_repo_id, revision=revision)
    assert type(loaded) is ConceptDiffusionPipeline
    expected = reconstruct(pipe)
    assert_same_images(np.load(tmp_path / "remote.npy"), expected)
    assert_same_images(reconstruct(loaded), expected)


def test_load_offline_from_cache(pipe, hub_server, hub_repo_id, monkeypatch):
    from huggingface_hub import constants

    pipe.push_to_hub(hub_repo_id)
    ConceptDiffusionPipeline.from_pretrained(hub_repo_id)  # fills the cache
    hub_server.stop()  # any request would now fail
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    loaded = ConceptDiffusionPipeline.from_pretrained(hub_repo_id)
    assert_same_images(reconstruct(loaded), reconstruct(pipe))


def test_cli_push_and_pull(pipe, hub_repo_id, tmp_path, capsys):
    pipe.save_pretrained(tmp_path / "saved")
    assert run_cli(["push", str(tmp_path / "saved"), hub_repo_id, "--private", "--revision", "v1"]) == 0
    api = HfApi()
    info = api.model_info(hub_repo_id, revision="v1")
    assert info.private and "README.md" in [s.rfilename for s in info.siblings]
    assert [s.rfilename for s in api.model_info(hub_repo_id).siblings] == [".gitattributes"]  # main untouched

    assert run_cli(["pull", hub_repo_id, "--out", str(tmp_path / "pulled"), "--revision", "v1"]) == 0
    assert "pulled" in capsys.readouterr().out
    loaded = ConceptDiffusionPipeline.from_pretrained(tmp_path / "pulled")
    assert_same_images(reconstruct(loaded), reconstruct(pipe))


def test_bad_token_keeps_local_save(pipe, hub_repo_id, tmp_path):
    with pytest.raises(HubError, match="rejected the token") as error:
        pipe.push_to_hub(hub_repo_id, token="hf_not_the_right_one", save_directory=tmp_path / "saved")
    assert str(tmp_path / "saved") in str(error.value)
    assert error.value.local_folder == str(tmp_path / "saved")
    ConceptDiffusionPipeline.from_pretrained(tmp_path / "saved")


def test_unknown_repo(hub_server, tmp_path):
    with pytest.raises(HubError, match="has no repo 'test-user/no-such-model'"):
        pull_pipeline("test-user/no-such-model", tmp_path / "out")
    assert run_cli(["pull", "test-user/no-such-model", "--out", str(tmp_path / "out")]) == 1


def test_server_gone_mid_upload_keeps_local_save(pipe, hub_server, hub_repo_id):
    HfApi().create_repo(hub_repo_id)
    hub_server.fail_next_upload()  # the commit request is cut and the server dies
    with pytest.raises(HubError, match="connection to the Hub") as error:
        pipe.push_to_hub(hub_repo_id)
    folder = error.value.local_folder
    assert folder and folder in str(error.value) and "concept-diffusion push" in str(error.value)
    assert_same_images(reconstruct(ConceptDiffusionPipeline.from_pretrained(folder)), reconstruct(pipe))

    with pytest.raises(HubError, match="connection to the Hub"):  # refused while it is down
        pipe.push_to_hub(hub_repo_id)
    hub_server.start()
    assert HfApi().list_repo_files(hub_repo_id) == [".gitattributes"]  # nothing half-pushed
    push_folder_to_hub(folder, hub_repo_id)  # what the message tells the user to do
    assert "model_index.json" in HfApi().list_repo_files(hub_repo_id)


def test_connection_reset_on_upload(pipe, hub_server, hub_repo_id, tmp_path):
    hub_server.fail_next("commit", "reset")
    with pytest.raises(HubError, match="connection to the Hub"):
        pipe.push_to_hub(hub_repo_id, save_directory=tmp_path / "saved")
    assert (tmp_path / "saved" / "model_index.json").is_file()


def test_repo_that_is_not_a_concept_diffusion_pipeline(hub_repo_id, tmp_path):
    api = HfApi()
    api.create_repo(hub_repo_id)
    api.upload_file(path_or_fileobj=b'{"model_type": "bert"}', path_in_repo="config.json", repo_id=hub_repo_id)
    with pytest.raises(ValueError, match="not a diffusers pipeline"):
        pull_pipeline(hub_repo_id, tmp_path / "out")
    index = {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}
    api.upload_file(path_or_fileobj=json.dumps(index).encode(), path_in_repo="model_index.json", repo_id=hub_repo_id)
    with pytest.raises(ValueError, match="'StableDiffusionPipeline' pipeline, not a ConceptDiffusionPipeline"):
        check_pipeline_repo(hub_repo_id)
    with pytest.raises(ValueError, match="not a ConceptDiffusionPipeline"):
        ConceptDiffusionPipeline.from_pretrained(hub_repo_id)


def test_repo_with_pickled_weights_only(pipe, hub_repo_id, tmp_path):
    folder = tmp_path / "saved"
    pipe.save_pretrained(folder)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.rename(folder / "unet" / "diffusion_pytorch_model.bin")
    HfApi().create_repo(hub_repo_id)
    HfApi().upload_folder(repo_id=hub_repo_id, folder_path=folder)
    with pytest.raises(ValueError, match=r"unet has pickled weights only \(unet/diffusion_pytorch_model.bin\)"):
        pull_pipeline(hub_repo_id, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing was downloaded
    with pytest.raises((ValueError, FileNotFoundError), match="safetensors"):
        ConceptDiffusionPipeline.from_pretrained(hub_repo_id)


def test_card_shows_image_fidelity_only_when_measured(pipe):
    measured = render_model_card(pipe, "user/x", fidelity={"reconstruction PSNR, 20 steps": "30.1 dB"},
                                 fidelity_note="Measured on 128 held-out images.").text
    assert "## Image fidelity" in measured and "Measured on 128 held-out images." in measured
    assert "| reconstruction PSNR, 20 steps | 30.1 dB |" in measured
    assert "Image fidelity" not in render_model_card(pipe, "user/x").text


def test_card_rejects_non_numeric_metrics(pipe):
    with pytest.raises(ValueError, match=r"metrics\['factor_vae.eval_accuracy'\] = 'high': expected a number"):
        render_model_card(pipe, "user/x", metrics={"factor_vae": {"eval_accuracy": "high"}})


def test_committed_example_card_is_valid(hub_server):
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "model_cards" / "examples" / "tiny-pipeline"
    card = ModelCard.load(folder / "README.md")
    card.validate()  # against the local server: HF_ENDPOINT points there
    assert card.data.library_name == "diffusers" and card.data.eval_results
    assert (folder / "swap_grid.png").is_file() and "./swap_grid.png" in card.text
