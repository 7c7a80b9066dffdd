import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import AutoencoderKL, DDPMScheduler

from concept_diffusion import ConceptDiffusionPipeline, build_pipeline, load_ground_truth
from conftest import shipped_concept


def run(pipe, seed=0, **kwargs):
    kwargs.setdefault("num_inference_steps", 2)
    kwargs.setdefault("output_type", "np")
    return pipe(generator=torch.Generator().manual_seed(seed), **kwargs)


def test_reconstruction_matches_recorded_values(pipe, images):
    out = run(pipe, images=images)
    assert out.images.shape == (3, 32, 32, 3)
    assert out.concepts.shape == (3, 4)
    # Recorded with torch 2.13.0 (CPU) and diffusers 0.42.1, like diffusers' own pipeline tests.
    expected = np.array([0.568, 0.9321, 1.0, 0.9998, 0.749, 0.7116])
    np.testing.assert_allclose(out.images[0, 0, :6, 1], expected, atol=2e-3)
    assert abs(out.images.mean() - 0.5798) < 2e-3


def test_output_types(pipe, images):
    pil = run(pipe, images=images[:2], output_type="pil").images
    assert len(pil) == 2 and isinstance(pil[0], PIL.Image.Image) and pil[0].size == (32, 32)
    pt = run(pipe, images=images[:2], output_type="pt").images
    assert pt.shape == (2, 3, 32, 32) and 0 <= pt.min() and pt.max() <= 1
    np.testing.assert_allclose(pt.permute(0, 2, 3, 1).numpy(), run(pipe, images=images[:2]).images, atol=1e-6)


def test_generator_determines_output(pipe, images):
    first, again = run(pipe, images=images).images, run(pipe, images=images).images
    other = run(pipe, 1, images=images).images
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_input_formats_agree(pipe, images):
    pil = [PIL.Image.fromarray((image * 255).round().astype(np.uint8)) for image in images]
    as_uint8 = np.asarray([np.asarray(image) for image in pil]).astype(np.float32) / 255
    tensor = torch.from_numpy(as_uint8).permute(0, 3, 1, 2)  # diffusers' convention: tensors in [0, 1] too
    reference = run(pipe, images=as_uint8).images
    np.testing.assert_allclose(run(pipe, images=pil).images, reference, atol=1e-5)
    np.testing.assert_allclose(run(pipe, images=tensor).images, reference, atol=1e-5)
    np.testing.assert_allclose(run(pipe, images=list(as_uint8)).images, reference, atol=1e-5)
    single = run(pipe, images=as_uint8[0]).images
    np.testing.assert_allclose(single[0], reference[0], atol=1e-5)


def test_concepts_and_tokens_decode_like_images(pipe, images):
    concepts, tokens = pipe.encode(images, return_tokens=True)
    by_images = run(pipe, images=images).images
    np.testing.assert_allclose(run(pipe, concepts=concepts).images, by_images, atol=1e-6)
    np.testing.assert_allclose(run(pipe, tokens=tokens).images, by_images, atol=1e-6)
    edited = concepts.clone()
    edited[:, 0] += 3
    assert not np.allclose(run(pipe, concepts=edited).images, by_images)


def test_swap_grid_shares_noise_per_row(pipe, images):
    out = pipe.swap(images, images[:2], concept_indices=[1, 3], num_inference_steps=2, output_type="np",
                    generator=torch.Generator().manual_seed(0))
    assert out.images.shape == (3, 2, 32, 32, 3)
    # header row of references + one row per image; input column + one column per reference
    assert out.grid.size == (3 * 32, 4 * 32)
    concepts = pipe.encode(images)
    torch.testing.assert_close(out.concepts[2, 1, [1, 3]], concepts[1, [1, 3]])
    torch.testing.assert_close(out.concepts[2, 1, [0, 2]], concepts[2, [0, 2]])
    # Swapping an image's concepts with its own is a reconstruction from the same noise.
    reconstruction = run(pipe, images=images).images
    np.testing.assert_allclose(out.images[0, 0], reconstruction[0], atol=1e-5)
    np.testing.assert_allclose(out.images[1, 1], reconstruction[1], atol=1e-5)
    # Every column decodes its swapped concepts from the rows' noise. (That a swap shows is checked on a trained
    # model below: this untrained one barely reads its concepts, and its swap moved the pixels by 1e-6.)
    np.testing.assert_allclose(out.images[:, 0], run(pipe, concepts=out.concepts[:, 0]).images, atol=1e-5)


def test_edits_show_on_a_trained_model(shipped_pipe):
    """An edited concept and a swap change a trained model's 8-bit images by many levels, on any CPU."""
    data = load_ground_truth("shapes3d-procedural", image_size=32)
    factors = np.array([[0, 0, 0, 3, 1, 7], [5, 5, 5, 3, 1, 7]])  # floor, wall and object hues all differ
    images = data.sample_observations_from_factors(factors, np.random.RandomState(0))
    reconstruction = (run(shipped_pipe, images=images).images * 255).round()

    def mean_change(pictures):  # per image, in levels of 255
        return np.abs((pictures * 255).round() - reconstruction).mean(axis=(1, 2, 3))

    edited = shipped_pipe.encode(images)
    floor, wall = shipped_concept("floor_hue"), shipped_concept("wall_hue")
    edited[:, floor] = edited[:, floor].flip(0)  # each image takes the other's floor hue concept
    assert (mean_change(run(shipped_pipe, concepts=edited).images) >= 2).all()
    swapped = shipped_pipe.swap(images, images, concept_indices=[wall, floor], num_inference_steps=2, output_type="np",
                                generator=torch.Generator().manual_seed(0))
    assert (mean_change(swapped.images[[0, 1], [1, 0]]) >= 2).all()  # each image with the other's wall and floor hue concepts


def test_pairwise_swap_and_stochastic_sampling(pipe, images):
    kwargs = dict(num_inference_steps=3, eta=1.0, output_type="np")
    out = pipe.swap(images, images, concept_indices=0, pairwise=True, generator=torch.Generator().manual_seed(0), **kwargs)
    assert out.images.shape == (3, 1, 32, 32, 3)
    # With eta > 0, DDIM's per-step noise is shared too: a self-swap still equals the reconstruction.
    reconstruction = pipe(images=images, generator=torch.Generator().manual_seed(0), **kwargs).images
    np.testing.assert_allclose(out.images[:, 0], reconstruction, atol=1e-5)


def test_traverse(pipe, images):
    values = torch.tensor([-1.0, 0.0, 2.0])
    out = pipe.traverse(images[:2], concept_index=[0, 2], values=values, num_inference_steps=2, output_type="np",
                        generator=torch.Generator().manual_seed(0))
    assert out.images.shape == (4, 3, 32, 32, 3)
    assert out.grid.size == (4 * 32, 4 * 32)
    torch.testing.assert_close(out.concepts[1, :, 2], values)  # row 1 = image 0, concept 2
    # A sweep through the image's own value reconstructs it.
    own = pipe.encode(images[:1])[0, 0].item()
    same = pipe.traverse(images[:1], 0, values=[own], num_inference_steps=2, output_type="np",
                         generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(same.images[0, 0], run(pipe, images=images[:1]).images[0], atol=1e-5)
    table = torch.tensor([[0.0, 1.0], [5.0, 6.0]])
    per_concept = pipe.traverse(images[:1], concept_index=[1, 3], values=table, num_inference_steps=1, output_type="np")
    torch.testing.assert_close(per_concept.concepts[1, :, 3], table[1])
    with pytest.raises(ValueError, match=r"\(number of concepts, V\) table"):
        pipe.traverse(images[:1], concept_index=[1, 3], values=torch.zeros(3, 2))
    default = pipe.traverse(images, concept_index=1, num_inference_steps=1, output_type="pil")
    assert len(default.images) == 3 and len(default.images[0]) == 8


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda p, x: p(images=[PIL.Image.new("L", (32, 32))]), ValueError, "RGB.*convert"),
        (lambda p, x: p(images=np.zeros((1, 32, 32, 1), np.float32)), ValueError, "3 channels"),
        (lambda p, x: p(images=np.zeros((1, 64, 64, 3), np.float32)), ValueError, "32x32.*resize"),
        (lambda p, x: p(images=np.full((1, 32, 32, 3), np.nan, np.float32)), ValueError, "NaN"),
        (lambda p, x: p(images=np.full((1, 32, 32, 3), np.inf, np.float32)), ValueError, "NaN or infinite"),
        (lambda p, x: p(images=-x), ValueError, r"expected \[0, 1\]"),
        (lambda p, x: p(images=torch.full((1, 3, 32, 32), 3.0)), ValueError, r"expected \[0, 1\]"),
        (lambda p, x: p(images=torch.rand(1, 3, 32, 32) * 2 - 1), ValueError, r"\(x \+ 1\) / 2"),
        (lambda p, x: p(images=x[:0]), ValueError, "images is an empty batch"),
        (lambda p, x: p(images=[]), ValueError, "images is an empty list"),
        (lambda p, x: p(concepts=torch.zeros(0, 4)), ValueError, r"concepts must have shape \(batch >= 1, 4\)"),
        (lambda p, x: p(tokens=torch.zeros(0, 4, 8)), ValueError, r"tokens must have shape \(batch >= 1, 4, 8\)"),
        (lambda p, x: p.swap(x[:0], x, concept_indices=[0]), ValueError, "images is an empty batch"),
        (lambda p, x: p.traverse(x, concept_index=0, values=[]), ValueError, "values must be"),
        (lambda p, x: p(images=x.astype(np.int64)), TypeError, "images has dtype int64"),
        (lambda p, x: p(images=x, generator=[torch.Generator()] * 2), ValueError, "list of 2 generators.*3"),
        (lambda p, x: p(images=x, num_inference_steps=0), ValueError, "num_inference_steps"),
        (lambda p, x: p(images=x, concepts=torch.zeros(3, 4)), ValueError, "exactly one"),
        (lambda p, x: p(), ValueError, "exactly one"),
        (lambda p, x: p(concepts=torch.zeros(2, 5)), ValueError, r"\(batch >= 1, 4\)"),
        (lambda p, x: p(tokens=torch.zeros(2, 4, 3)), ValueError, r"\(batch >= 1, 4, 8\)"),
        (lambda p, x: p(images=x, output_type="latents"), ValueError, "output_type"),
        (lambda p, x: p.swap(x, x[:2], concept_indices=[0], pairwise=True), ValueError, "as many reference_images"),
        (lambda p, x: p.swap(x, x, concept_indices=[4]), ValueError, "out of range.*0..3"),
        (lambda p, x: p.swap(x, x, concept_indices=[]), ValueError, "empty"),
        (lambda p, x: p.traverse(x[:1], concept_index=-1, values=[0.0]), ValueError, "out of range"),
        (lambda p, x: p.traverse(x[:1], concept_index=0), ValueError, "values="),
        (lambda p, x: p.swap(x, "picture.png", concept_indices=0), TypeError, "reference_images must be"),
    ],
)
def test_bad_input_is_named(pipe, images, call, error, message):
    with pytest.raises(error, match=message):
        call(pipe, images)


def test_mismatched_token_width_is_rejected():
    pipe = build_pipeline("tiny")
    with pytest.raises(ValueError, match="cross_attention_dim"):
        ConceptDiffusionPipeline(concept_encoder=pipe.concept_encoder.__class__(sample_size=32, token_dim=5),
                                 unet=pipe.unet, scheduler=pipe.scheduler, vae=pipe.vae)


def test_pixel_space_pipeline_and_other_scheduler(images):
    pipe = build_pipeline("cpu")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.vae is None and pipe.latent_shape == (3, 32, 32)
    out = run(pipe, images=images[:1], num_inference_steps=1)
    assert out.images.shape == (1, 32, 32, 3)
    pipe.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    first = run(pipe, images=images[:1], num_inference_steps=2).images
    np.testing.assert_array_equal(first, run(pipe, images=images[:1], num_inference_steps=2).images)


def test_autoencoder_kl_first_stage(tmp_path, images):
    tiny = build_pipeline("tiny")
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=3, norm_num_groups=4,
                        sample_size=32, mid_block_add_attention=False).eval()
    pipe = ConceptDiffusionPipeline(concept_encoder=tiny.concept_encoder, unet=tiny.unet, scheduler=tiny.scheduler, vae=vae)
    pipe.set_progress_bar_config(disable=True)
    before = run(pipe, images=images).images
    pipe.save_pretrained(tmp_path / "kl")
    loaded = ConceptDiffusionPipeline.from_pretrained(tmp_path / "kl")
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.vae) is AutoencoderKL
    # Separately loaded models: equal to a tolerance, as kernels may differ between CPUs.
    np.testing.assert_allclose(run(loaded, images=images).images, before, rtol=1e-6, atol=1e-5)


# ---------------------------------------------------------------- inversion


def psnr(a, b):
    return float(np.mean(10 * np.log10(1 / np.mean((a - b) ** 2, axis=(1, 2, 3)))))


@pytest.mark.parametrize("preset", ["tiny", "cpu"])  # latent space (a VQModel first stage) and pixel space
def test_inverted_noise_reconstructs_better_than_fresh_noise(preset, images):
    pipe = build_pipeline(preset, seed=0)
    pipe.set_progress_bar_config(disable=True)
    inverted = pipe.invert(images, num_inference_steps=4)
    assert inverted.latents.shape == (3, *pipe.latent_shape)
    torch.testing.assert_close(inverted.concepts, pipe.encode(images))
    with torch.no_grad():
        target = pipe.encode_latents(pipe.preprocess(images))  # what the UNet denoises toward
    fresh = run(pipe, images=images, num_inference_steps=4, output_type="latent").images
    again = pipe(images=images, latents=inverted.latents, num_inference_steps=4, output_type="latent").images
    assert (again - target).norm() < 0.5 * (fresh - target).norm()  # an untrained UNet: DDIM retraced roughly


def test_edits_from_inverted_noise_keep_the_image(shipped_pipe):
    data = load_ground_truth("shapes3d-procedural", image_size=32)
    images = data.sample_observations_from_factors(data.sample_factors(4, np.random.RandomState(1)), np.random.RandomState(1))
    latents, concepts = shipped_pipe.invert(images, num_inference_steps=10, return_dict=False)
    kwargs = dict(num_inference_steps=10, output_type="np", latents=latents)
    reconstruction = shipped_pipe(images=images, **kwargs).images
    assert psnr(reconstruction, images) > 35  # fresh noise: about 23.5 dB
    # a swap with the image itself and a sweep through its own value are the reconstruction
    own = shipped_pipe.swap(images, images, concept_indices=[0, 3], pairwise=True, **kwargs).images[:, 0]
    np.testing.assert_allclose(own, reconstruction, atol=1e-5)
    sweep = shipped_pipe.traverse(images[:1], 2, values=concepts[0, 2:3], **{**kwargs, "latents": latents[:1]}).images[0, 0]
    np.testing.assert_allclose(sweep, reconstruction[0], atol=1e-5)
    with pytest.raises(ValueError, match=r"latents must have shape \(4, 3, 32, 32\).*pipe.invert"):
        shipped_pipe.swap(images, images, concept_indices=[0], num_inference_steps=2, latents=latents[:2])


def test_inversion_needs_ddim_and_named_input(pipe, images):
    with pytest.raises(ValueError, match="images is an empty batch"):
        pipe.invert(images[:0])
    with pytest.raises(ValueError, match="num_inference_steps"):
        pipe.invert(images, num_inference_steps=0)
    other = ConceptDiffusionPipeline(**{**pipe.components, "scheduler": DDPMScheduler.from_config(pipe.scheduler.config)})
    with pytest.raises(ValueError, match="invert retraces DDIM.*DDIMScheduler.from_config"):
        other.invert(images)
