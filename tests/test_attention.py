"""Cross-attention maps of the concept tokens: pipe.attention_maps, attention_grid and the CLI."""

import textwrap

import numpy as np
import PIL.Image
import pytest
import torch

from concept_diffusion import ConceptDiffusionPipeline, build_pipeline
from concept_diffusion.cli import main
from concept_diffusion.pipelines.pipeline_concept_diffusion import CrossAttentionRecorder

STEPS = 2


@pytest.fixture(scope="module")
def pipe():
    pipe = build_pipeline("tiny", seed=3)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def images():
    return np.random.RandomState(0).rand(2, 32, 32, 3).astype(np.float32)


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def reconstruct(pipe, images):
    return pipe(images=images, num_inference_steps=STEPS, generator=seeded(), output_type="np").images


def test_maps_have_image_resolution_and_sum_to_one_over_concepts(pipe, images):
    out = pipe.attention_maps(images, num_inference_steps=3, generator=seeded(), return_dict=True)
    num_concepts = pipe.concept_encoder.config.num_concepts
    assert out.maps.shape == (2, num_concepts, 32, 32)
    assert out.step_maps.shape == (3, 2, num_concepts, 32, 32)
    assert out.timesteps.tolist() == pipe.scheduler.timesteps.tolist()
    assert list(out.layer_maps) == pipe.attention_layers and len(pipe.attention_layers) == 4
    assert all(layer.shape == (2, num_concepts, 32, 32) for layer in out.layer_maps.values())
    torch.testing.assert_close(out.maps.sum(1), torch.ones(2, 32, 32), rtol=0, atol=1e-5)
    torch.testing.assert_close(out.step_maps.sum(2), torch.ones(3, 2, 32, 32), rtol=0, atol=1e-5)
    assert out.maps.min() >= 0
    # the average over passes and layers, as documented
    torch.testing.assert_close(out.maps, out.step_maps.mean(0), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(out.maps, torch.stack(list(out.layer_maps.values())).mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.images, images, atol=1e-6)
    plain = pipe.attention_maps(images, num_inference_steps=3, generator=seeded())
    torch.testing.assert_close(plain, out.maps, rtol=0, atol=0)  # same object, same noise: same bits


def test_chosen_timesteps_and_layers(pipe, images):
    out = pipe.attention_maps(images, timesteps=[50, 500, 900], layers=["up_blocks"], generator=seeded(), return_dict=True)
    assert out.timesteps.tolist() == [50, 500, 900]
    assert out.step_maps.shape[:2] == (3, 2)
    assert list(out.layer_maps) == [name for name in pipe.attention_layers if name.startswith("up_blocks.")]
    torch.testing.assert_close(out.maps.sum(1), torch.ones(2, 32, 32), rtol=0, atol=1e-5)
    # a different noise level changes what the layers see
    other = pipe.attention_maps(images, timesteps=[999], layers=["up_blocks"], generator=seeded())
    assert not torch.allclose(other, out.step_maps[0], atol=1e-4)


def test_recorded_softmax_is_the_layers_own(pipe, images):
    """Recompute one layer's cross-attention softmax from its inputs, captured with a forward hook."""
    name = "mid_block.attentions.0.transformer_blocks.0.attn2"
    layer = pipe.unet.get_submodule(name)
    captured = []
    handle = layer.register_forward_pre_hook(lambda module, args, kwargs: captured.append((args, kwargs)), with_kwargs=True)
    try:
        out = pipe.attention_maps(images, timesteps=[400], layers=[name], generator=seeded(), return_dict=True)
    finally:
        handle.remove()
    (args, kwargs), = captured
    hidden, context = args[0] if args else kwargs["hidden_states"], kwargs["encoder_hidden_states"]
    heads = layer.heads
    query = layer.to_q(hidden).unflatten(-1, (heads, -1)).transpose(1, 2)
    key = layer.to_k(context).unflatten(-1, (heads, -1)).transpose(1, 2)
    softmax = (query @ key.transpose(-1, -2) * layer.scale).softmax(-1).mean(1)  # (B, h*w, N)
    side = int(softmax.shape[1] ** 0.5)
    expected = torch.nn.functional.interpolate(
        softmax.reshape(2, side, side, -1).permute(0, 3, 1, 2), size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out.layer_maps[name], expected, rtol=1e-5, atol=1e-6)


def test_recording_leaves_outputs_unchanged(pipe, images):
    expected = reconstruct(pipe, images)
    originals = pipe.unet.attn_processors
    recorders = {key: CrossAttentionRecorder(processor, []) if key.endswith("attn2.processor") else processor
                 for key, processor in originals.items()}
    pipe.unet.set_attn_processor(dict(recorders))
    try:
        recorded = reconstruct(pipe, images)
    finally:
        pipe.unet.set_attn_processor(dict(originals))
    np.testing.assert_array_equal(recorded, expected)  # the same computation: the bits are the point
    assert all(len(recorder.records) == STEPS for key, recorder in recorders.items() if key.endswith("attn2.processor"))
    pipe.attention_maps(images, num_inference_steps=STEPS, generator=seeded())
    np.testing.assert_array_equal(reconstruct(pipe, images), expected)


def test_processors_restored_after_an_error(pipe, images, monkeypatch):
    originals = pipe.unet.attn_processors

    def failing_step(*args, **kwargs):
        raise RuntimeError("scheduler failed mid-run")

    monkeypatch.setattr(pipe.scheduler, "step", failing_step)
    with pytest.raises(RuntimeError, match="mid-run"):
        pipe.attention_maps(images, num_inference_steps=STEPS)
    monkeypatch.undo()
    restored = pipe.unet.attn_processors
    assert list(restored) == list(originals)
    assert all(restored[key] is originals[key] for key in originals)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"layers": ["down_blocks.7"]}, "match no cross-attention layer"),
        ({"timesteps": [5000]}, r"timesteps must be integers in \[0, 1000\)"),
        ({"timesteps": [0.5]}, "timesteps must be integers"),
        ({"timesteps": []}, "timesteps must be integers"),
    ],
)
def test_bad_arguments_are_explained(pipe, images, kwargs, message):
    originals = pipe.unet.attn_processors
    with pytest.raises(ValueError, match=message):
        pipe.attention_maps(images, **kwargs)
    assert all(pipe.unet.attn_processors[key] is originals[key] for key in originals)


def test_attention_grid_is_a_labelled_picture(pipe, images):
    grid = pipe.attention_grid(images, num_inference_steps=STEPS, tile_size=64, generator=seeded())
    num_concepts = pipe.concept_encoder.config.num_concepts
    title = max(14, 64 // 7)
    assert grid.size == ((num_concepts + 1) * 64, 2 * (64 + title))
    # the first tile is the input image, upscaled
    first = np.asarray(grid.crop((0, title, 64, title + 64)).resize((32, 32), PIL.Image.NEAREST)) / 255
    np.testing.assert_allclose(first, images[0], atol=1 / 255 + 1e-6)
    with pytest.raises(ValueError, match="one label per concept"):
        pipe.attention_grid(images, concept_labels=["a"], num_inference_steps=STEPS)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, pipe):
    folder = tmp_path_factory.mktemp("attention") / "pipeline"
    pipe.save_pretrained(folder)
    return folder


def test_cli_writes_the_grid(saved, images, tmp_path, capsys):
    paths = []
    for i, image in enumerate(images):
        path = tmp_path / f"image{i}.png"
        PIL.Image.fromarray((image * 255).round().astype(np.uint8)).resize((48, 48)).save(path)  # any size
        paths.append(str(path))
    out = tmp_path / "maps.png"
    assert main(["attention", str(saved), *paths, "--out", str(out), "--steps", "2", "--tile-size", "64"]) == 0
    with PIL.Image.open(out) as grid:
        assert grid.size == (5 * 64, 2 * (64 + 14))
    assert "wrote" in capsys.readouterr().out
    assert main(["attention", str(saved), paths[0], "--out", str(out), "--timesteps", "100,2000"]) == 2


def test_remote_code_pipeline_has_attention_maps(saved, images, tmp_path, run_without_package):
    np.save(tmp_path / "images.npy", images)
    script = textwrap.dedent(
        f"""
        import numpy as np, torch
        from diffusers import DiffusionPipeline
        pipe = DiffusionPipeline.from_pretrained({str(saved)!r}, trust_remote_code=True)
        pipe.set_progress_bar_config(disable=True)
        maps = pipe.attention_maps(np.load({str(tmp_path / "images.npy")!r}), num_inference_steps=2,
                                   generator=torch.Generator().manual_seed(0))
        np.save({str(tmp_path / "maps.npy")!r}, maps.numpy())
        print(type(pipe).__module__)
        """
    )
    result = run_without_package(script)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "diffusers_modules" in result.stdout
    local = ConceptDiffusionPipeline.from_pretrained(saved)
    local.set_progress_bar_config(disable=True)
    expected = local.attention_maps(images, num_inference_steps=2, generator=seeded()).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "maps.npy"), expected, rtol=1e-5, atol=1e-6)
