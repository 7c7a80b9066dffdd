import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, UNet2DConditionModel, VQModel

from concept_diffusion import build_pipeline, list_presets
from concept_diffusion.presets import preset_folder


def test_packaged_presets():
    assert list_presets() == ["cars3d", "cpu", "mpi3d", "shapes3d", "tiny"]


@pytest.mark.parametrize("name", ["shapes3d", "mpi3d", "cars3d"])
def test_paper_presets_have_released_code_sizes(name):
    pipe = build_pipeline(name)
    encoder, unet, vae, scheduler = pipe.concept_encoder.config, pipe.unet.config, pipe.vae.config, pipe.scheduler
    assert (encoder.sample_size, encoder.num_concepts, encoder.token_dim, encoder.width) == (64, 20, 16, 128)
    assert tuple(unet.block_out_channels) == (64, 128, 256, 256)  # model_channels 64, channel_mult (1,2,4,4)
    assert unet.layers_per_block == 2 and unet.attention_head_dim == 8 and unet.cross_attention_dim == 16
    assert list(unet.down_block_types).count("CrossAttnDownBlock2D") == 3
    assert unet.resnet_time_scale_shift == "scale_shift"
    assert isinstance(pipe.vae, VQModel) and vae.latent_channels == 3 and vae.num_vq_embeddings == 2048
    assert pipe.latent_shape == (3, 16, 16)
    assert isinstance(scheduler, DDIMScheduler) and scheduler.config.num_train_timesteps == 1000
    betas = scheduler.betas.numpy()
    np.testing.assert_allclose([betas[0], betas[-1]], [0.0015, 0.0155], rtol=1e-5)
    np.testing.assert_allclose(np.sqrt(betas), np.linspace(np.sqrt(0.0015), np.sqrt(0.0155), 1000), rtol=1e-5)


@pytest.mark.parametrize("name", ["shapes3d", "mpi3d", "cars3d"])
def test_paper_presets_train_with_the_released_recipe(name):
    """configs/latent-diffusion/shapes3d-vq-4-16-encdiff.yaml: eps, L1, uniform t, batch 128,
    lr 2.56e-4 (1e-6 x 128 x 2 GPUs), 10k warm-up steps, UNet EMA 0.9999, zero-initialised UNet."""
    from concept_diffusion.training.config import TrainingConfig, build_config

    config = build_config(TrainingConfig, {"preset": name})
    assert build_pipeline(name).scheduler.config.prediction_type == "epsilon" and config.prediction_type is None
    assert (config.loss, config.timestep_sampling, config.snr_gamma) == ("l1", "uniform", None)
    assert (config.batch_size, config.learning_rate, config.lr_warmup_steps) == (128, 2.56e-4, 10_000)
    assert (config.ema_decay, config.ema_encoder, config.released_zero_init) == (0.9999, False, True)


def test_cpu_preset_is_small_pixel_space():
    pipe = build_pipeline("cpu")
    assert pipe.vae is None and pipe.concept_encoder.config.sample_size == 32
    assert sum(p.numel() for p in pipe.unet.parameters()) < 5_000_000


def test_same_seed_same_weights_and_global_rng_untouched():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a, b, c = build_pipeline("tiny", seed=0), build_pipeline("tiny", seed=0), build_pipeline("tiny", seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    wa, wb, wc = (p.unet.conv_in.weight for p in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    assert not a.unet.training and not a.concept_encoder.training


def test_build_from_folder(tmp_path):
    import shutil

    shutil.copytree(preset_folder("tiny"), tmp_path / "mine")
    pipe = build_pipeline(tmp_path / "mine")
    assert isinstance(pipe.unet, UNet2DConditionModel)
    with pytest.raises(ValueError, match="unknown preset 'huge'.*tiny"):
        build_pipeline("huge")
    shutil.rmtree(tmp_path / "mine" / "unet")
    with pytest.raises(FileNotFoundError, match="'unet' has no config"):
        build_pipeline(tmp_path / "mine")
