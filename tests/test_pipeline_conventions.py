"""diffusers' conventions, as its PipelineTesterMixin checks them: [0, 1] images in and out, dict ==
tuple, batch == single, output_type="latent", step callbacks, CPU offload, loader arguments and
save/load with torch_dtype. Tiny components, 2 steps."""

import numpy as np
import PIL.Image
import pytest
import torch

from concept_diffusion import ConceptDiffusionPipeline, build_pipeline


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def run(pipe, **kwargs):
    kwargs.setdefault("num_inference_steps", 2)
    kwargs.setdefault("output_type", "np")
    kwargs.setdefault("generator", seeded())
    return pipe(**kwargs)


def test_pt_output_fed_back_in_is_the_same_image(pipe, images):
    """Tensors in and out are in [0, 1] (VaeImageProcessor's convention), so outputs chain."""
    pt = run(pipe, images=images, output_type="pt").images
    np_out = run(pipe, images=images).images
    pil = run(pipe, images=images, output_type="pil").images
    assert pt.shape == (3, 3, 32, 32) and 0 <= float(pt.min()) and float(pt.max()) <= 1
    latents = run(pipe, images=images, output_type="latent").images
    decoded = pipe.decode_latents(latents).detach()  # model space, [-1, 1]
    # Same object: only the float rounding of x / 2 + 1 / 2 and back separates them.
    torch.testing.assert_close(pipe.preprocess(pt), decoded, rtol=0, atol=1e-6)
    torch.testing.assert_close(pipe.preprocess(np_out), pipe.preprocess(pt), rtol=0, atol=0)
    again_pt = run(pipe, images=pt).images
    np.testing.assert_array_equal(again_pt, run(pipe, images=np_out).images)
    np.testing.assert_array_equal(again_pt, run(pipe, images=list(pt)).images)
    # PIL rounds to 8 bits: the same image to within half a grey level.
    np.testing.assert_allclose(pipe.preprocess(pil).numpy(), decoded.numpy(), atol=2 * 0.5 / 255 + 1e-6)


def test_latent_output_decodes_to_the_image_output(pipe, images):
    latents = run(pipe, images=images, output_type="latent").images
    assert latents.shape == (3, *pipe.latent_shape)
    images_out = pipe.postprocess(pipe.decode_latents(latents).detach(), "np")
    np.testing.assert_array_equal(images_out, run(pipe, images=images).images)
    swap = pipe.swap(images, images[:2], concept_indices=[0], num_inference_steps=2, output_type="latent", generator=seeded())
    assert swap.images.shape == (3, 2, *pipe.latent_shape) and swap.grid is None


def test_dict_and_tuple_outputs_agree(pipe, images):
    as_dict = run(pipe, images=images)
    images_out, concepts = run(pipe, images=images, return_dict=False)
    np.testing.assert_array_equal(as_dict.images, images_out)
    torch.testing.assert_close(as_dict.concepts, concepts, rtol=0, atol=0)
    for edit in (
        lambda **kw: pipe.swap(images, images[:2], concept_indices=[1], **kw),
        lambda **kw: pipe.traverse(images[:2], concept_index=0, values=[-1.0, 1.0], **kw),
    ):
        out = edit(num_inference_steps=2, output_type="np", generator=seeded())
        edited, grid, edited_concepts = edit(num_inference_steps=2, output_type="np", generator=seeded(), return_dict=False)
        np.testing.assert_array_equal(out.images, edited)
        assert isinstance(grid, PIL.Image.Image) and np.array_equal(np.asarray(out.grid), np.asarray(grid))
        torch.testing.assert_close(out.concepts, edited_concepts, rtol=0, atol=0)


def test_batch_equals_single(pipe, images):
    """One generator per image: each row of a batch equals that image run alone (diffusers' 1e-4)."""
    batch = run(pipe, images=images, generator=[seeded(i) for i in range(3)]).images
    for i in range(3):
        single = run(pipe, images=images[i], generator=seeded(i)).images
        np.testing.assert_allclose(batch[i], single[0], atol=1e-4)
    # Compared before the VQ decoder: its nearest-code lookup turns 1e-7 into a different code.
    traversal = pipe.traverse(images, concept_index=1, values=[0.0, 2.0], num_inference_steps=2, output_type="latent",
                              generator=[seeded(i) for i in range(3)])
    alone = pipe.traverse(images[2:], concept_index=1, values=[0.0, 2.0], num_inference_steps=2, output_type="latent",
                          generator=seeded(2))
    torch.testing.assert_close(traversal.images[2], alone.images[0], rtol=0, atol=1e-4)

def test_step_callback_sees_and_replaces_latents(pipe, images):
    seen = []

    def callback(pipeline, step, timestep, callback_kwargs):
        seen.append((step, int(timestep), sorted(callback_kwargs), pipeline.num_timesteps))
        if step == pipeline.num_timesteps - 1:  # replace the final latents: the output must follow
            return {"latents": torch.zeros_like(callback_kwargs["latents"])}
        return {}

    out = run(pipe, images=images, output_type="latent", callback_on_step_end=callback,
              callback_on_step_end_tensor_inputs=["latents", "tokens"])
    assert [s[0] for s in seen] == [0, 1] and seen[0][2] == ["latents", "tokens"] and seen[0][3] == 2
    assert seen[0][1] > seen[1][1]  # timesteps run down
    assert torch.count_nonzero(out.images) == 0
    with pytest.raises(ValueError, match="callback_on_step_end_tensor_inputs.*'latents', 'tokens'"):
        run(pipe, images=images, callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["noise"])
    with pytest.raises(TypeError, match="callback_on_step_end must be callable"):
        run(pipe, images=images, callback_on_step_end="print")


def test_model_cpu_offload_gives_the_same_images(images):
    """accelerate's model offload, on the CPU as the execution device (no accelerator here). The
    sequential offload is not tested: accelerate cannot run it with the CPU as the execution device
    (its meta-device round trip fails the same way for diffusers' own DDPMPipeline)."""
    pipe = build_pipeline("tiny", seed=0)
    pipe.set_progress_bar_config(disable=True)
    expected = run(pipe, images=images).images
    pipe.enable_model_cpu_offload(device="cpu")
    np.testing.assert_array_equal(run(pipe, images=images).images, expected)
    swap = pipe.swap(images, images[:1], concept_indices=[0], num_inference_steps=2, output_type="np", generator=seeded())
    assert swap.images.shape == (3, 1, 32, 32, 3)


def test_save_and_load_with_torch_dtype_and_variant(tmp_path, images):
    pipe = build_pipeline("tiny", seed=0)
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(tmp_path / "fp32")
    pipe.to(torch.float16).save_pretrained(tmp_path / "fp16", variant="fp16")
    assert (tmp_path / "fp16" / "concept_encoder" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    loaded = ConceptDiffusionPipeline.from_pretrained(tmp_path / "fp16", variant="fp16", torch_dtype=torch.float16,
                                                      low_cpu_mem_usage=True, device_map="cpu")
    assert {loaded.concept_encoder.dtype, loaded.unet.dtype, loaded.vae.dtype} == {torch.float16}
    loaded.set_progress_bar_config(disable=True)
    # The same float16 weights, loaded: equal to float16 precision.
    np.testing.assert_allclose(run(loaded, images=images).images, run(pipe, images=images).images, atol=5e-3)
    widened = ConceptDiffusionPipeline.from_pretrained(tmp_path / "fp32", torch_dtype=torch.float64)
    assert widened.unet.dtype == widened.concept_encoder.dtype == torch.float64
    with pytest.raises(OSError, match="fp16.safetensors"):
        ConceptDiffusionPipeline.from_pretrained(tmp_path / "fp32", variant="fp16")
