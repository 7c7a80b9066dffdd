"""The recipe's options beyond the released code: Skip Dropout, AdaGN conditioning, the encoder's learning rate,
the edge-weighted loss, the intensity-gradient loss, multi-resolution noise and the first stage's codebook initialised from data. Each is off by default, and off leaves training as it was."""

import numpy as np
import pytest
import torch

from concept_diffusion import ConceptDiffusionPipeline, build_pipeline
from concept_diffusion.pipelines.pipeline_concept_diffusion import unet_condition
from concept_diffusion.training import AutoencoderTrainingConfig, TrainingConfig, build_config, train, train_autoencoder
from concept_diffusion.training.skip_dropout import SkipDropout

TINY = dict(preset="tiny", batch_size=4, lr_warmup_steps=2, eval_every=0, eval_metrics=[], checkpoint_every=0,
            report_to="none", sample_steps=2, latent_scale_batches=1, log_every=1)


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("vae")
    return train_autoencoder(build_config(AutoencoderTrainingConfig, dict(preset="tiny", output_dir=str(out), max_steps=2, batch_size=4)))


def tiny_config(tmp_path, vae_dir, name="run", **overrides):
    return build_config(TrainingConfig, {**TINY, "vae": vae_dir, "output_dir": str(tmp_path / name), **overrides})


def unet_inputs(pipe, batch=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(batch, *pipe.latent_shape, generator=generator)
    tokens = pipe.concept_encoder.concepts_to_tokens(torch.randn(batch, pipe.concept_encoder.config.num_concepts, generator=generator))
    return sample, torch.tensor([10, 500]), tokens


def received_skips(unet):
    """Record the skip connections each up block receives (a hook registered after Skip Dropout's sees its output)."""
    seen = []
    handles = [block.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["res_hidden_states_tuple"]), with_kwargs=True)
               for block in unet.up_blocks]
    return seen, handles


# ---------------------------------------------------------------- Skip Dropout


def test_skip_dropout_drops_whole_channels_in_training_only():
    pipe = build_pipeline("tiny")
    unet = pipe.unet
    sample, t, tokens = unet_inputs(pipe)
    with torch.no_grad():
        plain_skips, handles = received_skips(unet)
        plain = unet(sample, t, encoder_hidden_states=tokens).sample
        for handle in handles:
            handle.remove()
        skip_dropout = SkipDropout(unet, p=0.5)
        dropped_skips, handles = received_skips(unet)
        unet.eval()
        assert torch.equal(unet(sample, t, encoder_hidden_states=tokens).sample, plain)  # inference is untouched
        unet.train()
        skip_dropout.generator = torch.Generator().manual_seed(0)
        unet(sample, t, encoder_hidden_states=tokens)
    fresh = dropped_skips[len(plain_skips):]  # the training pass
    zeroed, total = 0, 0
    for before_block, after_block in zip(plain_skips, fresh):
        for before, after in zip(before_block, after_block):
            kept = after.flatten(2).abs().amax(dim=2) > 0  # (B, C): a channel is zero everywhere or scaled
            torch.testing.assert_close(after[kept], 2 * before[kept])
            zeroed, total = zeroed + int((~kept).sum()), total + kept.numel()
    assert 0.3 < zeroed / total < 0.7  # p = 0.5 over hundreds of (image, channel) pairs
    for handle in handles:
        handle.remove()
    skip_dropout.remove()
    assert not any(block._forward_pre_hooks for block in unet.up_blocks)


def test_skip_dropout_masks_follow_the_generator():
    pipe = build_pipeline("tiny")
    pipe.unet.train()
    skip_dropout = SkipDropout(pipe.unet, p=0.2)
    sample, t, tokens = unet_inputs(pipe)
    outputs = []
    with torch.no_grad():
        for seed in (3, 3, 4):
            skip_dropout.generator = torch.Generator().manual_seed(seed)
            outputs.append(pipe.unet(sample, t, encoder_hidden_states=tokens).sample)
    assert torch.equal(outputs[0], outputs[1])
    assert not torch.equal(outputs[0], outputs[2])
    with pytest.raises(ValueError, match="skip_dropout must be in"):
        SkipDropout(pipe.unet, p=1.0)


def test_training_with_skip_dropout_resumes_exactly(tmp_path, vae_dir):
    straight = train(tiny_config(tmp_path, vae_dir, "straight", max_steps=4, checkpoint_every=2, skip_dropout=0.2))
    train(tiny_config(tmp_path, vae_dir, "resumed", max_steps=2, checkpoint_every=2, skip_dropout=0.2))
    resumed = train(tiny_config(tmp_path, vae_dir, "resumed", max_steps=4, checkpoint_every=2, skip_dropout=0.2, resume="latest"))
    without = train(tiny_config(tmp_path, vae_dir, "without", max_steps=4, checkpoint_every=2))
    weights = {name: ConceptDiffusionPipeline.from_pretrained(result.pipeline_dir).unet.state_dict()
               for name, result in (("straight", straight), ("resumed", resumed), ("without", without))}
    for key, value in weights["straight"].items():
        torch.testing.assert_close(weights["resumed"][key], value, rtol=0, atol=0, msg=key)  # same process: the bits are the point
    assert any(not torch.equal(weights["without"][key], value) for key, value in weights["straight"].items())
    saved = ConceptDiffusionPipeline.from_pretrained(straight.pipeline_dir)
    assert not any(block._forward_pre_hooks for block in saved.unet.up_blocks)  # a saved model is an ordinary one


# ---------------------------------------------------------------- AdaGN


def test_adagn_feeds_the_flattened_tokens_to_the_time_embedding():
    pipe = build_pipeline("tiny", conditioning="adagn")
    config = pipe.unet.config
    encoder = pipe.concept_encoder.config
    assert config.class_embed_type == "projection"
    assert config.projection_class_embeddings_input_dim == encoder.num_concepts * encoder.token_dim
    assert pipe.attention_layers == []  # no cross-attention left
    assert "AttnDownBlock2D" in config.down_block_types  # self-attention kept where the cross-attention blocks had it
    seen = []
    pipe.unet.class_embedding.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    sample, t, tokens = unet_inputs(pipe)
    with torch.no_grad():
        pipe.unet(sample, t, **unet_condition(pipe.unet.config, tokens))
    torch.testing.assert_close(seen[0], tokens.flatten(1))
    with pytest.raises(ValueError, match="no cross-attention"):
        pipe.attention_maps(np.random.rand(1, 32, 32, 3), num_inference_steps=1)


def test_cross_attention_unets_get_only_the_context():
    pipe = build_pipeline("tiny")
    tokens = torch.zeros(1, 4, 8)
    assert unet_condition(pipe.unet.config, tokens).keys() == {"encoder_hidden_states"}
    for one, other in zip(pipe.unet.state_dict().values(), build_pipeline("tiny", conditioning="cross_attention").unet.state_dict().values()):
        assert torch.equal(one, other)
    with pytest.raises(ValueError, match="conditioning must be one of"):
        build_pipeline("tiny", conditioning="film")


def test_training_with_adagn_saves_a_pipeline_that_decodes(tmp_path, vae_dir):
    result = train(tiny_config(tmp_path, vae_dir, max_steps=2, conditioning="adagn"))
    pipe = ConceptDiffusionPipeline.from_pretrained(result.pipeline_dir)
    assert pipe.unet.config.class_embed_type == "projection"
    out = pipe(images=np.random.RandomState(0).rand(2, 32, 32, 3), num_inference_steps=2, output_type="np")
    assert out.images.shape == (2, 32, 32, 3) and np.isfinite(out.images).all()
    with pytest.raises(ValueError, match="conditioning must be"):
        tiny_config(tmp_path, vae_dir, conditioning="film")


# ---------------------------------------------------------------- the encoder's learning rate


def test_encoder_learning_rate_multiplier(tmp_path, vae_dir):
    from concept_diffusion.training.runtime import make_accelerator
    from concept_diffusion.training.trainer import setup

    config = tiny_config(tmp_path, vae_dir, max_steps=1, encoder_lr_multiplier=3.0, lr_warmup_steps=0)
    parts, _, _ = setup(config, make_accelerator(), None)
    encoder_group, unet_group = parts.optimizer.param_groups
    assert {id(p) for p in encoder_group["params"]} == {id(p) for p in parts.encoder.parameters()}
    assert unet_group["lr"] == pytest.approx(config.learning_rate)
    assert encoder_group["lr"] == pytest.approx(3 * config.learning_rate)
    with pytest.raises(ValueError, match="encoder_lr_multiplier must be positive"):
        tiny_config(tmp_path, vae_dir, encoder_lr_multiplier=0)


def test_two_parameter_groups_at_one_learning_rate_step_like_one():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    twin = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    twin.load_state_dict(model.state_dict())
    one = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=True)
    two = torch.optim.AdamW([{"params": twin[0].parameters(), "lr": 1e-2 * 1.0}, {"params": twin[1].parameters()}], lr=1e-2, fused=True)
    inputs = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        for net, optimizer in ((model, one), (twin, two)):
            optimizer.zero_grad()
            net(inputs).square().mean().backward()
            optimizer.step()
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)  # same process, same kernels: the default multiplier changes no bit


# ---------------------------------------------------------------- the edge-weighted loss


def test_edge_weights_peak_on_outlines_and_average_one():
    from concept_diffusion.training.trainer import edge_weights

    images = torch.zeros(2, 3, 16, 16)
    images[0, :, 5:10, 5:10] = 1.0  # a square on a flat background; image 1 stays flat
    weights = edge_weights(images, 10.0)
    assert weights.shape == (2, 1, 16, 16)
    assert torch.allclose(weights.mean(dim=(1, 2, 3)), torch.ones(2))
    assert weights[0, 0, 4, 7] > 5 and weights[0, 0, 0, 0] < 0.1  # the square's outline against the flat floor
    assert torch.equal(weights[1], torch.ones(1, 16, 16))  # nothing to weight: the plain loss
    assert torch.allclose(edge_weights(images, 0.0), torch.ones(2, 1, 16, 16))


def test_edge_loss_weight_weights_the_error_and_trains(tmp_path, vae_dir):
    from diffusers import DDPMScheduler

    from concept_diffusion.training.trainer import diffusion_loss, edge_weights

    pipe = build_pipeline("tiny", seed=0)
    scheduler = DDPMScheduler(num_train_timesteps=1000, prediction_type="sample")
    latents = torch.zeros(2, *pipe.latent_shape)
    latents[:, :, 2:5, 2:5] = 1.0
    tokens = unet_inputs(pipe)[2]
    losses = {}
    for weight in (0.0, 10.0):
        config = tiny_config(tmp_path, vae_dir, loss="l2", timestep_sampling="uniform", edge_loss_weight=weight)
        with torch.no_grad():
            losses[weight] = diffusion_loss(pipe.unet, scheduler, latents, tokens, torch.Generator().manual_seed(3), config)
    generator = torch.Generator().manual_seed(3)  # the same draws as diffusion_loss makes, to weight its error by hand
    noise = torch.randn(latents.shape, generator=generator)
    timesteps = torch.randint(0, 1000, (2,), generator=generator)
    with torch.no_grad():
        prediction = pipe.unet(scheduler.add_noise(latents, noise, timesteps), timesteps, **unet_condition(pipe.unet.config, tokens)).sample
    error = (prediction - latents) ** 2
    assert losses[0.0] == pytest.approx(error.mean().item(), rel=1e-5)
    assert losses[10.0] == pytest.approx((error * edge_weights(latents, 10.0)).mean().item(), rel=1e-5)
    assert losses[10.0] != pytest.approx(losses[0.0], rel=1e-3)

    result = train(tiny_config(tmp_path, vae_dir, "edges", max_steps=2, edge_loss_weight=10.0))
    assert ConceptDiffusionPipeline.from_pretrained(result.pipeline_dir).unet is not None
    with pytest.raises(ValueError, match="edge_loss_weight must be 0"):
        tiny_config(tmp_path, vae_dir, edge_loss_weight=-1.0)


def test_gradient_loss_pays_outlines_not_hues_and_trains(tmp_path, vae_dir):
    from concept_diffusion.training.trainer import diffusion_loss, intensity_gradient_error

    def scene(top_hue, square_at):  # a two-colour background and a grey square
        image = torch.zeros(1, 3, 16, 16)
        image[:, :, :8] = torch.tensor(top_hue).view(1, 3, 1, 1)
        image[:, :, 8:] = torch.tensor([0.1, 0.1, 0.9]).view(1, 3, 1, 1)
        image[:, :, 9:13, square_at:square_at + 4] = 0.5
        return image

    target = scene([0.9, 0.1, 0.1], 3)
    recoloured = scene([0.1, 0.9, 0.1], 3)  # the same channel mean: only the hue changed
    moved = scene([0.9, 0.1, 0.1], 5)  # the square two pixels to the right
    assert intensity_gradient_error(recoloured - target).item() == pytest.approx(0.0, abs=1e-6)
    assert ((recoloured - target) ** 2).mean() > ((moved - target) ** 2).mean()  # the plain loss pays the hue more
    step = 0.5 - 1.1 / 3  # the square's channel mean against the floor's: 16 horizontal and 8 vertical steps of 240 each
    assert intensity_gradient_error(moved - target).item() == pytest.approx((16 / 240 + 8 / 240) * step**2, rel=1e-4)
    assert intensity_gradient_error(moved - target, "l1").item() == pytest.approx((16 / 240 + 8 / 240) * step, rel=1e-4)

    pipe = build_pipeline("tiny", seed=0)
    scheduler = pipe.scheduler
    latents, tokens = torch.rand(2, *pipe.latent_shape, generator=torch.Generator().manual_seed(1)), unet_inputs(pipe)[2]
    losses = {}
    for weight in (0.0, 100.0):
        config = tiny_config(tmp_path, vae_dir, loss="l2", timestep_sampling="uniform", gradient_loss_weight=weight)
        with torch.no_grad():
            losses[weight] = diffusion_loss(pipe.unet, scheduler, latents, tokens, torch.Generator().manual_seed(3), config).item()
    assert losses[100.0] > losses[0.0] * 1.1  # the term is added, with its weight

    result = train(tiny_config(tmp_path, vae_dir, "gradient", max_steps=2, gradient_loss_weight=100.0))
    assert ConceptDiffusionPipeline.from_pretrained(result.pipeline_dir).unet is not None
    with pytest.raises(ValueError, match="gradient_loss_weight must be 0"):
        tiny_config(tmp_path, vae_dir, gradient_loss_weight=-1.0)


def test_multires_noise_hides_the_layout_and_trains(tmp_path, vae_dir):
    from concept_diffusion.training.trainer import training_noise

    shape = (64, 3, 32, 32)
    plain = training_noise(shape, torch.Generator().manual_seed(0), 0.0)
    assert torch.equal(plain, torch.randn(shape, generator=torch.Generator().manual_seed(0)))  # off: the old draw
    multires = training_noise(shape, torch.Generator().manual_seed(0), 0.8)
    assert torch.allclose(multires.std(dim=(1, 2, 3)), torch.ones(64))  # each sample keeps unit variance
    block_means = [torch.nn.functional.avg_pool2d(noise, 8).std().item() for noise in (plain, multires)]
    assert block_means[0] == pytest.approx(1 / 8, rel=0.1)  # white noise averages out over an 8x8 block
    assert block_means[1] > 3 * block_means[0]  # multi-resolution noise does not: the layout stays hidden

    result = train(tiny_config(tmp_path, vae_dir, "multires", max_steps=2, multires_noise_discount=0.8))
    assert ConceptDiffusionPipeline.from_pretrained(result.pipeline_dir).unet is not None
    with pytest.raises(ValueError, match="multires_noise_discount must be in"):
        tiny_config(tmp_path, vae_dir, multires_noise_discount=1.0)


# ---------------------------------------------------------------- schedules over the run's progress


def test_run_progress_and_the_schedules_it_drives():
    from concept_diffusion.training.schedules import cosine_decay, gradient_loss_weight_at, run_progress

    assert run_progress(100, None, 25, 999.0) == 0.25
    assert run_progress(None, 10.0, 10**6, 150.0) == 0.25  # time over max_minutes
    assert run_progress(100, 10.0, 50, 450.0) == 0.75  # whichever is further
    assert run_progress(100, 10.0, 200, 0.0) == 1.0
    assert cosine_decay(0.4, 0.5) == 1.0 and cosine_decay(0.75, 0.5) == pytest.approx(0.5) and cosine_decay(1.0, 0.5) == pytest.approx(0.0)
    assert cosine_decay(0.99, 1.0) == 1.0  # no decay
    assert gradient_loss_weight_at(100.0, 300.0, 0.5, 0.0) == 300.0
    assert gradient_loss_weight_at(100.0, 300.0, 0.5, 0.25) == pytest.approx(200.0)
    assert gradient_loss_weight_at(100.0, 300.0, 0.5, 0.8) == 100.0
    assert gradient_loss_weight_at(100.0, None, 0.5, 0.0) == 100.0


def logged(result, key):
    import json

    return [record[key] for record in map(json.loads, open(result.log_file)) if key in record]


def test_learning_rate_decays_over_the_last_part_of_the_run(tmp_path, vae_dir):
    constant = train(tiny_config(tmp_path, vae_dir, "constant", max_steps=4))
    decayed = train(tiny_config(tmp_path, vae_dir, "decayed", max_steps=4, lr_decay_start=0.5))
    lr = TINY.get("learning_rate", TrainingConfig.learning_rate)
    assert logged(constant, "lr")[-1] == pytest.approx(lr)  # warm-up over, then constant
    # the last step runs at progress 3/4, half-way down the cosine from 0.5 to 1
    assert logged(decayed, "lr")[-1] == pytest.approx(0.5 * lr)
    with pytest.raises(ValueError, match="lr_decay_start must be a fraction"):
        tiny_config(tmp_path, vae_dir, lr_decay_start=1.5)


def test_scheduled_gradient_loss_weight_trains_and_differs(tmp_path, vae_dir):
    from concept_diffusion.training.trainer import weights_digest

    common = dict(max_steps=3, gradient_loss_weight=100.0, loss="l2")
    plain = train(tiny_config(tmp_path, vae_dir, "plain", **common))
    same = train(tiny_config(tmp_path, vae_dir, "same", gradient_loss_weight_start=100.0, **common))
    scheduled = train(tiny_config(tmp_path, vae_dir, "scheduled", gradient_loss_weight_start=300.0, **common))
    digests = [weights_digest(*(lambda p: (p.concept_encoder, p.unet))(ConceptDiffusionPipeline.from_pretrained(r.pipeline_dir)))
               for r in (plain, same, scheduled)]
    assert digests[0] == digests[1]  # a schedule from the weight to itself is no schedule
    assert digests[2] != digests[0]  # 300 -> 100 trains other weights
    assert logged(plain, "loss")[0] < logged(scheduled, "loss")[0]  # the first step pays 300x the term, not 100x
    with pytest.raises(ValueError, match="gradient_loss_weight_until must be"):
        tiny_config(tmp_path, vae_dir, gradient_loss_weight_until=0.0)


# ---------------------------------------------------------------- a second phase from a saved pipeline


def test_second_phase_trains_the_unet_of_a_saved_pipeline_with_the_encoder_frozen(tmp_path, vae_dir):
    first = train(tiny_config(tmp_path, vae_dir, "first", max_steps=2))
    second = train(tiny_config(tmp_path, vae_dir, "second", max_steps=2, init_from=first.pipeline_dir,
                               train_encoder=False, timestep_sampling="uniform"))
    before, after = (ConceptDiffusionPipeline.from_pretrained(r.pipeline_dir) for r in (first, second))
    for (name, old), new in zip(before.concept_encoder.state_dict().items(), after.concept_encoder.state_dict().values()):
        assert torch.equal(old, new), f"the frozen encoder's {name} changed"  # BatchNorm statistics included
    assert not all(torch.equal(old, new) for old, new in zip(before.unet.parameters(), after.unet.parameters()))
    assert after.vae.config.scaling_factor == before.vae.config.scaling_factor  # the folder's first stage, kept
    # the UNet starts from the saved one: a step too small to move it leaves the saved weights
    still = train(tiny_config(tmp_path, vae_dir, "still", max_steps=1, learning_rate=1e-12, init_from=first.pipeline_dir,
                              train_encoder=False))
    kept = ConceptDiffusionPipeline.from_pretrained(still.pipeline_dir).unet
    for old, new in zip(before.unet.parameters(), kept.parameters()):
        torch.testing.assert_close(new, old, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="init_from=.*no model_index.json"):
        tiny_config(tmp_path, vae_dir, init_from=str(tmp_path))
    with pytest.raises(ValueError, match="ema_encoder needs train_encoder"):
        tiny_config(tmp_path, vae_dir, train_encoder=False, ema_encoder=True)


# ---------------------------------------------------------------- the first stage's codebook


def test_codebook_from_data_starts_at_the_latents(tmp_path):
    from concept_diffusion.training.autoencoder import init_codebook_from_data
    from concept_diffusion.training.data import batch_loader, load_training_data

    config = build_config(AutoencoderTrainingConfig, dict(preset="tiny", output_dir=str(tmp_path), max_steps=1, batch_size=4,
                                                          codebook_init="data"))
    vae = build_pipeline("tiny").vae
    uniform = vae.quantize.embedding.weight.detach().clone()
    assert uniform.abs().max() <= 1 / vae.quantize.n_e
    dataset, _ = load_training_data(config.data, vae.config.sample_size)
    init_codebook_from_data(vae, dataset, config)
    codes = vae.quantize.embedding.weight.detach()
    with torch.no_grad():
        first = next(iter(batch_loader(dataset, config.batch_size, seed=config.seed + 7919)))["images"]
        latents = vae.encode(first).latents.permute(0, 2, 3, 1).reshape(-1, codes.shape[1])
    assert codes.std() > 10 * uniform.std()
    distance = torch.cdist(codes, latents).amin(dim=1)
    found = distance < 1e-5 * latents.abs().max()
    assert found.float().mean() > 0.2  # the first batch gives some of the codes, the later batches the rest
    result = train_autoencoder(config)
    assert result.endswith("vae")


def test_codebook_from_data_needs_a_vq_first_stage(tmp_path, monkeypatch):
    from diffusers import AutoencoderKL

    import concept_diffusion.training.autoencoder as autoencoder

    class KLPipeline:
        vae = AutoencoderKL(sample_size=32, block_out_channels=(8,), norm_num_groups=8, latent_channels=2)

    monkeypatch.setattr(autoencoder, "build_pipeline", lambda *args, **kwargs: KLPipeline())
    config = build_config(AutoencoderTrainingConfig, dict(preset="tiny", output_dir=str(tmp_path), max_steps=1, batch_size=4,
                                                          codebook_init="data"))
    with pytest.raises(ValueError, match="codebook_init='data' needs a VQModel"):
        train_autoencoder(config)
    with pytest.raises(ValueError, match="codebook_init must be"):
        build_config(AutoencoderTrainingConfig, dict(preset="tiny", codebook_init="kmeans"))


# ---------------------------------------------------------------- angle concepts


def test_angle_concepts_train_and_the_default_keeps_the_presets_encoder(tmp_path, vae_dir):
    from concept_diffusion.training.trainer import weights_digest

    def digest(result):
        pipe = ConceptDiffusionPipeline.from_pretrained(result.pipeline_dir)
        return pipe, weights_digest(pipe.concept_encoder, pipe.unet)

    _, default = digest(train(tiny_config(tmp_path, vae_dir, "default", max_steps=2)))
    _, scalar = digest(train(tiny_config(tmp_path, vae_dir, "scalar", max_steps=2, token_mode="scalar")))
    angle_pipe, angle = digest(train(tiny_config(tmp_path, vae_dir, "angle", max_steps=2, token_mode="angle")))
    assert default == scalar  # the tiny preset's encoder is scalar: naming it changes nothing
    assert angle != default
    assert angle_pipe.concept_encoder.config.token_mode == "angle"  # saved, so loading rebuilds it
    images = np.random.default_rng(0).random((3, 32, 32, 3))
    concepts = angle_pipe.encode(images)
    assert concepts.abs().max() <= torch.pi
    swapped = angle_pipe.swap(images[:1], images[1:], concept_indices=[0], num_inference_steps=2, output_type="np")
    assert swapped.images.shape[:2] == (1, 2)
    with pytest.raises(ValueError, match="token_mode must be 'scalar' or 'angle'"):
        tiny_config(tmp_path, vae_dir, token_mode="circle")
    with pytest.raises(ValueError, match="token_mode builds a fresh encoder"):
        tiny_config(tmp_path, vae_dir, token_mode="angle", init_from=str(tmp_path / "angle" / "pipeline"))


# ---------------------------------------------------------------- a block of combinations held out


def test_held_out_combinations_never_reach_a_training_step(tmp_path, vae_dir, monkeypatch):
    from concept_diffusion.training import trainer
    from concept_diffusion.training.data import in_block, parse_held_out

    seen = []
    step = trainer.training_step
    monkeypatch.setattr(trainer, "training_step", lambda parts, config, batch, number: (
        seen.append(batch["factors"].numpy()), step(parts, config, batch, number))[1])
    spec = "shape=cube,cylinder,sphere;floor_hue=0,1,2,3,4,5,6,7"  # 60% of the grid: a random batch of 4 would hit it
    train(tiny_config(tmp_path, vae_dir, "held_out", max_steps=6, held_out=spec))
    from concept_diffusion import load_ground_truth

    data = load_ground_truth("shapes3d-procedural", image_size=32)
    block = parse_held_out(spec, data)
    assert block == {4: [0, 1, 2], 0: list(range(8))}
    factors = np.concatenate(seen)
    assert len(factors) == 6 * TINY["batch_size"] and not in_block(factors, block).any()


@pytest.mark.parametrize("spec, message", [
    ("colour=red", "colour=red.*FACTOR one of"),
    ("shape=pyramid", "shape has no value 'pyramid'.*0..3.*cube"),
    ("shape=4", "shape has no value '4'"),
    ("shape=", "FACTOR=VALUE"),
    (";", "names no factor"),
])
def test_bad_held_out_blocks_name_the_mistake(spec, message):
    from concept_diffusion import load_ground_truth
    from concept_diffusion.training.data import parse_held_out, without_combinations

    data = load_ground_truth("shapes3d-procedural", image_size=32)
    with pytest.raises(ValueError, match=message):
        parse_held_out(spec, data)
    with pytest.raises(ValueError, match="every image"):
        without_combinations(data.torch_dataset(), data, "shape=0,1,2,3")
    with pytest.raises(ValueError, match="needs data with a factor grid"):
        parse_held_out("shape=0", None)
