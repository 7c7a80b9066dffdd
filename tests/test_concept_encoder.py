import pytest
import torch

from concept_diffusion import ConceptEncoder


@pytest.mark.parametrize("sample_size", [32, 64, 128])
def test_shapes_for_each_supported_size(sample_size):
    encoder = ConceptEncoder(sample_size=sample_size, num_concepts=5, token_dim=6, width=8).eval()
    out = encoder(torch.zeros(3, 3, sample_size, sample_size))
    assert out.concepts.shape == (3, 5)
    assert out.tokens.shape == (3, 5, 6)


def test_token_k_depends_only_on_concept_k():
    """The paper's scalar tokens: each concept has its own MLP, so editing concept k moves token k only."""
    torch.manual_seed(0)
    encoder = ConceptEncoder(sample_size=32, num_concepts=4, token_dim=3, width=8)
    concepts = torch.randn(2, 4)
    edited = concepts.clone()
    edited[:, 2] += 1.5
    before, after = encoder.concepts_to_tokens(concepts), encoder.concepts_to_tokens(edited)
    changed = (before - after).abs().amax(dim=(0, 2)) > 0
    assert changed.tolist() == [False, False, True, False]


def test_batched_mlps_equal_one_loop_per_concept():
    torch.manual_seed(0)
    encoder = ConceptEncoder(sample_size=32, num_concepts=3, token_dim=4, width=8)
    mlps = encoder.token_mlps
    concepts = torch.randn(5, 3)
    for k in range(3):
        hidden = concepts[:, k : k + 1]
        for layer in range(3):
            hidden = hidden @ mlps.weights[layer][k] + mlps.biases[layer][k]
            if layer < 2:
                hidden = torch.nn.functional.elu(hidden)
        torch.testing.assert_close(encoder.concepts_to_tokens(concepts)[:, k], hidden)


def test_forward_tokens_match_concepts_to_tokens():
    encoder = ConceptEncoder(sample_size=32, num_concepts=4, token_dim=3, width=8).eval()
    out = encoder(torch.rand(2, 3, 32, 32) * 2 - 1)
    torch.testing.assert_close(out.tokens, encoder.concepts_to_tokens(out.concepts))


def test_angle_mode_concepts_are_angles_and_a_full_turn_gives_the_same_tokens():
    """In "angle" mode a concept is a point on a circle: its value is an angle, and moving it by 2 pi (once round
    the ring, as a hue goes from 0.9 back to 0.0) gives the same token; editing concept k still moves token k only."""
    torch.manual_seed(0)
    encoder = ConceptEncoder(sample_size=32, num_concepts=4, token_dim=3, width=8, token_mode="angle").eval()
    out = encoder(torch.rand(5, 3, 32, 32) * 2 - 1)
    assert out.concepts.shape == (5, 4) and out.tokens.shape == (5, 4, 3)
    assert out.concepts.abs().max() <= torch.pi
    torch.testing.assert_close(out.tokens, encoder.concepts_to_tokens(out.concepts))
    turned = out.concepts.clone()
    turned[:, 1] += 2 * torch.pi
    torch.testing.assert_close(encoder.concepts_to_tokens(turned), out.tokens, atol=1e-5, rtol=1e-5)
    turned[:, 1] += 1.0
    changed = (encoder.concepts_to_tokens(turned) - out.tokens).abs().amax(dim=(0, 2)) > 1e-4
    assert changed.tolist() == [False, True, False, False]


def test_vector_mode_gives_tokens_and_their_mean_as_concepts():
    encoder = ConceptEncoder(sample_size=32, num_concepts=4, token_dim=3, width=8, token_mode="vector").eval()
    out = encoder(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert out.tokens.shape == (2, 4, 3)
    torch.testing.assert_close(out.concepts, out.tokens.mean(-1))
    with pytest.raises(ValueError, match="token_mode 'scalar' or 'angle'"):
        encoder.concepts_to_tokens(out.concepts)


@pytest.mark.parametrize(
    "images, message",
    [
        (torch.zeros(1, 1, 32, 32), "3 channels, got 1.*convert"),
        (torch.zeros(1, 3, 64, 64), "32x32.*got 64x64.*resize"),
        (torch.zeros(0, 3, 32, 32), "empty batch"),
        (torch.zeros(3, 32, 32), "batch, channels, height, width"),
    ],
)
def test_bad_images_raise_clear_errors(images, message):
    encoder = ConceptEncoder(sample_size=32, num_concepts=2, token_dim=2, width=8)
    with pytest.raises(ValueError, match=message):
        encoder(images)


def test_bad_config_and_concepts():
    with pytest.raises(ValueError, match="token_mode"):
        ConceptEncoder(token_mode="matrix")
    with pytest.raises(ValueError, match="multiple of 16"):
        ConceptEncoder(sample_size=40)
    encoder = ConceptEncoder(sample_size=32, num_concepts=4, token_dim=3, width=8)
    with pytest.raises(ValueError, match=r"\(batch, 4\)"):
        encoder.concepts_to_tokens(torch.zeros(2, 5))


def test_save_and_load_roundtrip(tmp_path):
    encoder = ConceptEncoder(sample_size=32, num_concepts=4, token_dim=3, width=8).eval()
    encoder.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    assert (tmp_path / "concept_encoder.py").is_file()
    loaded = ConceptEncoder.from_pretrained(tmp_path)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    # A loaded copy, not the same object: equal to 1e-6 of the values' scale, as kernels differ between CPUs.
    expected = encoder(images).tokens.detach()
    torch.testing.assert_close(loaded(images).tokens, expected, rtol=1e-6, atol=1e-6 * float(expected.abs().max()))
    with pytest.raises(ValueError, match="safetensors only"):
        encoder.save_pretrained(tmp_path / "pickled", safe_serialization=False)


def test_backbone_is_the_released_encoder4_layer_for_layer():
    """Released `Encoder4` (openaimodel_enc.py): Conv-BN-ReLU, Conv-BN-ReLU, Conv-BN, Conv-BN-ReLU,
    EncResBlock(bn=True), BN, ReLU, EncResBlock(bn=True), flatten, Linear(2048 -> N)."""
    from torch import nn

    encoder = ConceptEncoder(sample_size=64, num_concepts=20, token_dim=16, width=128)

    def kinds(sequence):
        return [type(layer).__name__ for layer in sequence]

    conv, bn, relu = "Conv2d", "BatchNorm2d", "ReLU"
    assert kinds(encoder.backbone) == [
        conv, bn, relu, conv, bn, relu, conv, bn, conv, bn, relu,
        "ResidualBlock", bn, relu, "ResidualBlock", "Flatten",
    ]  # fmt: skip
    for block in (encoder.backbone[11], encoder.backbone[14]):
        assert kinds(block.layers) == [relu, conv, bn, relu, conv]
        assert [block.layers[1].kernel_size, block.layers[4].kernel_size] == [(3, 3), (1, 1)]
    downs = [layer for layer in encoder.backbone if isinstance(layer, nn.Conv2d)]
    assert [(c.kernel_size, c.stride, c.padding) for c in downs] == [((4, 4), (2, 2), (1, 1))] * 4
    assert sum(isinstance(m, nn.BatchNorm2d) for m in encoder.modules()) == 7
    assert (encoder.to_concepts.in_features, encoder.to_concepts.out_features) == (2048, 20)


def test_released_zero_init_makes_every_residual_branch_and_the_output_zero():
    from concept_diffusion.models.released_init import zero_init_like_released
    from concept_diffusion.presets import build_pipeline

    unet = zero_init_like_released(build_pipeline("tiny").unet)
    sample = torch.randn(2, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    context = torch.randn(2, 4, unet.config.cross_attention_dim)
    out = unet(sample, torch.tensor([10, 500]), encoder_hidden_states=context).sample
    assert torch.count_nonzero(out) == 0
    assert torch.count_nonzero(unet.up_blocks[-1].resnets[0].conv2.weight) == 0
    assert torch.count_nonzero(unet.conv_in.weight) > 0  # only the released zero layers are zeroed


def test_forward_checks_shapes_but_never_values():
    """No data-dependent check in forward: `isfinite(...).all()` would make each training step wait
    for the device. Values are checked by the pipeline (and the trainer's data path) instead."""
    encoder = ConceptEncoder(sample_size=32, num_concepts=2, token_dim=2, width=8).eval()
    out = encoder(torch.full((1, 3, 32, 32), float("nan")))
    assert torch.isnan(out.concepts).all()
