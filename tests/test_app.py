"""The concept editor: its handlers directly, then the running app through gradio_client.

The editor runs on the trained model we ship, whose concepts carry the hues: an edit there changes the image by
many 8-bit levels on any CPU, so a test that an edit shows (or that an endpoint used the edited value) can fail
for the right reason only. An untrained model barely reads its concepts.
"""

import os
import socket

import numpy as np
import PIL.Image
import pytest
import torch

pytest.importorskip("gradio", reason="the editor needs the [app] extra: pip install -e '.[app]'")
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

from concept_diffusion import build_pipeline  # noqa: E402
from concept_diffusion.app import ConceptEditor, fit_image  # noqa: E402
from concept_diffusion.app.editor import concept_statistics  # noqa: E402
from concept_diffusion.data import load_ground_truth  # noqa: E402
from conftest import shipped_concept  # noqa: E402

FLOOR = shipped_concept("floor_hue")  # the shipped model's concept that carries the floor hue

STEPS = 2
MIN_CHANGE = 2.0  # mean change of the 8-bit image, in levels of 255, that counts as a visible edit


@pytest.fixture(scope="module")
def data():
    return load_ground_truth("shapes3d-procedural", image_size=32)


@pytest.fixture(scope="module")
def editor(data, shipped_pipe):
    return ConceptEditor(shipped_pipe, data=data, default_steps=STEPS, max_steps=4, num_reference_images=200)


@pytest.fixture(scope="module")
def latent_editor():
    """The editor on the tiny preset: a latent (VQ) pipeline, for what does not need trained concepts."""
    return ConceptEditor(build_pipeline("tiny", seed=5), default_steps=STEPS, max_steps=4)


@pytest.fixture(scope="module")
def images(data):
    return data.sample_observations(2, np.random.RandomState(7))


def mean_change(image, other) -> float:
    """Mean absolute difference of two images in [0, 1] once stored in 8 bits, in levels of 255."""
    return float(np.abs((np.asarray(image) * 255).round() - (np.asarray(other) * 255).round()).mean())


def decode_with_pipeline(editor, concepts, seed=0):
    out = editor.pipe(concepts=torch.tensor([concepts]), num_inference_steps=STEPS, generator=torch.Generator().manual_seed(seed),
                      output_type="np")
    return out.images[0]


@pytest.mark.parametrize("which", ["editor", "latent_editor"])
def test_encode_then_decode_is_the_pipelines_reconstruction(which, request, images):
    editor = request.getfixturevalue(which)
    concepts = editor.encode(images[0])
    assert len(concepts) == editor.pipe.concept_encoder.config.num_concepts and all(isinstance(value, float) for value in concepts)
    fitted = fit_image(images[0], 32)  # uploads are 8-bit images
    np.testing.assert_allclose(concepts, editor.pipe.encode(fitted[None])[0].numpy(), rtol=1e-6, atol=1e-6)
    decoded = editor.decode(concepts)
    assert decoded.shape == (32, 32, 3) and 0 <= decoded.min() and decoded.max() <= 1
    np.testing.assert_array_equal(decoded, decode_with_pipeline(editor, concepts))
    np.testing.assert_array_equal(editor.decode(concepts), decoded)  # fixed noise: the same image again


def test_moving_one_concept_changes_the_image_and_the_seed_fixes_the_noise(editor, images):
    concepts = editor.encode(images[0])
    moved = list(concepts)
    low, high = editor.statistics.ranges[FLOOR]
    moved[FLOOR] = low if moved[FLOOR] > (low + high) / 2 else high  # the far end of the floor hue's concept
    assert mean_change(editor.decode(moved), editor.decode(concepts)) >= MIN_CHANGE
    assert mean_change(editor.decode(concepts, seed=1), editor.decode(concepts, seed=0)) >= MIN_CHANGE


def test_uploads_of_any_size_and_mode_fit_the_model(editor, images):
    pixels = (images[0] * 255).round().astype(np.uint8)
    big = PIL.Image.fromarray(pixels).resize((200, 120))
    for upload in (big, big.convert("RGBA"), big.convert("L"), np.asarray(big), pixels):
        fitted = editor.fit(upload)
        assert fitted.shape == (32, 32, 3) and fitted.dtype == np.float32
    np.testing.assert_allclose(fit_image(pixels, 32), images[0], atol=0.5 / 255 + 1e-6)
    with pytest.raises(ValueError, match=r"image is missing"):
        editor.encode(None)
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        fit_image(images[0] * 3, 32)
    with pytest.raises(TypeError, match="PIL image or a numpy array"):
        fit_image("photo.png", 32)


def test_slider_ranges_and_factor_labels_come_from_the_data(editor, data):
    ranges = editor.statistics.ranges
    assert ranges.shape == (10, 2) and (ranges[:, 0] < ranges[:, 1]).all()
    assert [label.split(":")[0] for label in editor.labels] == [f"concept {i}" for i in range(10)]
    assert all(factor is None or factor in data.factor_names for factor in editor.statistics.factors)
    assert {"floor_hue", "wall_hue", "object_hue"} <= set(editor.statistics.factors)  # the hues the model learned
    bare = ConceptEditor(editor.pipe)
    assert bare.labels == [f"concept {i}" for i in range(10)] and bare.examples == []
    assert len(editor.examples) == 8 and editor.examples[0].shape == (32, 32, 3)


def test_factor_labels_name_the_factor_each_concept_carries():
    """A known answer: concept 0 is factor b, concept 1 is factor a, concept 2 is noise."""

    class Factors:
        factor_names = ["a", "b"]

        def sample(self, num, random_state):
            factors = random_state.randint(0, 5, size=(num, 2))
            return factors, factors.astype(np.float32)

    class ReadsFactors:
        def encode(self, images):
            noise = np.random.RandomState(len(images)).rand(len(images))
            return torch.tensor(np.stack([images[:, 1], images[:, 0] * 3 + 1, noise], axis=1))

    statistics = concept_statistics(ReadsFactors(), Factors(), num_images=600)
    assert statistics.factors == ["b", "a", None]
    np.testing.assert_allclose(statistics.ranges[1], [1, 13], atol=1e-6)


def test_swap_takes_the_chosen_concepts_from_b(editor, images):
    everything = editor.swap(images[0], images[1], list(range(editor.num_concepts)))
    np.testing.assert_allclose(everything, editor.decode(editor.encode(images[1])), atol=1e-5)
    one = editor.swap(images[0], images[1], [FLOOR])
    concepts = editor.encode(images[0])
    concepts[FLOOR] = editor.encode(images[1])[FLOOR]
    np.testing.assert_allclose(one, editor.decode(concepts), atol=1e-5)
    assert mean_change(one, editor.decode(editor.encode(images[0]))) >= MIN_CHANGE  # the swap shows
    with pytest.raises(ValueError, match="tick at least one concept"):
        editor.swap(images[0], images[1], [])
    with pytest.raises(ValueError, match="image B is missing"):
        editor.swap(images[0], None, [1])


def test_traverse_sweeps_one_concept(editor, images):
    frames = editor.traverse(images[0], 3, -1.0, 1.0, 5)
    assert [caption for _, caption in frames] == [f"concept 3 = {v:.2f}" for v in np.linspace(-1, 1, 5)]
    concepts = editor.encode(images[0])
    concepts[3] = 1.0
    np.testing.assert_allclose(frames[-1][0], editor.decode(concepts), atol=1e-5)
    with pytest.raises(ValueError, match="num_values must be in 2..32"):
        editor.traverse(images[0], 3, -1.0, 1.0, 1)


def test_invert_first_keeps_the_image_and_inverts_it_once(editor, images):
    def error(image):
        return float(np.abs(np.asarray(image) - images[0]).mean())

    concepts = editor.encode(images[0])
    fresh = editor.decode(concepts)
    before = len(editor._inversions)
    kept = editor.decode(concepts, invert=True, image=images[0])
    assert error(kept) < 0.5 * error(fresh)  # the rest of the image comes from its own noise, not fresh noise
    assert len(editor._inversions) == before + 1
    np.testing.assert_array_equal(editor.swap(images[0], images[0], [0, 1], invert=True), kept)  # a self-swap, the same noise
    assert len(editor._inversions) == before + 1  # computed once per image and step count
    sweep = editor.traverse(images[0], 2, concepts[2], concepts[2] + 1, num_values=2, invert=True)
    np.testing.assert_allclose(sweep[0][0], kept, atol=1e-5)
    with pytest.raises(ValueError, match="invert first needs the image"):
        editor.decode(concepts, invert=True)


def test_attention_grid_and_steps_limit(editor, images):
    grid = editor.attention(images[0])
    assert isinstance(grid, PIL.Image.Image) and grid.size == (11 * 160, 160 + 22)
    with pytest.raises(ValueError, match=r"steps must be in 1..4"):
        editor.decode(editor.encode(images[0]), steps=5)
    with pytest.raises(ValueError, match="max_steps must be at least 1"):
        ConceptEditor(editor.pipe, max_steps=0)


# ---------------------------------------------------------------- the running app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(editor):
    from concept_diffusion.app import build_demo
    from concept_diffusion.app.demo import launch_demo

    demo = build_demo(editor)
    port = free_port()
    launch_demo(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield demo, f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def client(served):
    from gradio_client import Client

    return Client(served[1], verbose=False)


@pytest.fixture(scope="module")
def image_files(images, tmp_path_factory):
    folder = tmp_path_factory.mktemp("uploads")
    paths = []
    for i, image in enumerate(images):
        path = folder / f"image{i}.png"
        PIL.Image.fromarray((image * 255).round().astype(np.uint8)).save(path)
        paths.append(str(path))
    return paths


def read_image(path) -> np.ndarray:
    with PIL.Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float32) / 255


def test_every_event_is_an_api_endpoint(client, editor):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    expected = {"/encode", "/decode", "/reset", "/swap", "/traverse", "/attention", "/concept_range"}
    assert set(endpoints) == expected | ({"/random"} if editor.can_sample else set())


def test_random_draws_concepts_from_the_prior(latent_editor):
    from concept_diffusion.app.demo import build_demo
    from concept_diffusion.training.prior import attach_prior, fit_concept_prior

    assert not latent_editor.can_sample and "random" not in {f.api_name for f in build_demo(latent_editor).fns.values()}
    with pytest.raises(ValueError, match="no concept prior.*fit-prior"):
        latent_editor.random_concepts()
    pipe = build_pipeline("tiny", seed=5)
    attach_prior(pipe, fit_concept_prior(pipe, np.random.RandomState(0).rand(32, 32, 32, 3).astype(np.float32), num_components=2))
    editor = ConceptEditor(pipe, default_steps=STEPS, max_steps=4)
    concepts = editor.random_concepts(3)
    assert concepts == editor.random_concepts(3) != editor.random_concepts(4)
    points = pipe.concept_prior.points
    assert all(value in points[:, k].tolist() for k, value in enumerate(concepts))  # each from its own marginal
    assert "random" in {f.api_name for f in build_demo(editor).fns.values()}


def test_api_encode_decode_and_reset(client, editor, image_files):
    from gradio_client import handle_file

    concepts, reconstruction, *sliders = client.predict(handle_file(image_files[0]), STEPS, 0, False, api_name="/encode")
    expected = editor.encode(read_image(image_files[0]))
    np.testing.assert_allclose(concepts, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose([slider["value"] for slider in sliders], expected, rtol=0, atol=5e-4 + 1e-9)  # shown to 3 decimals
    assert all(slider["minimum"] <= value <= slider["maximum"] for slider, value in zip(sliders, concepts))  # /decode takes them as they are
    pixels = lambda image: (image * 255).round()  # noqa: E731  PNG stores 8 bits
    np.testing.assert_array_equal(pixels(read_image(reconstruction)), pixels(editor.decode(expected)))
    moved = list(concepts)
    low, high = sliders[FLOOR]["minimum"], sliders[FLOOR]["maximum"]  # the server checks the sliders' bounds
    moved[FLOOR] = low if moved[FLOOR] > (low + high) / 2 else high  # the far end of the floor hue's concept
    assert abs(moved[FLOOR] - concepts[FLOOR]) > 1e-3
    edited = client.predict(*moved, STEPS, 0, False, None, api_name="/decode")
    np.testing.assert_array_equal(pixels(read_image(edited)), pixels(editor.decode(moved)))
    assert mean_change(read_image(edited), read_image(reconstruction)) >= MIN_CHANGE  # so /decode used the moved value
    restored, *_ = client.predict(concepts, STEPS, 0, False, None, api_name="/reset")
    np.testing.assert_array_equal(read_image(restored), read_image(reconstruction))


def test_api_swap_traverse_attention_and_errors(client, editor, image_files):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    a, b = handle_file(image_files[0]), handle_file(image_files[1])
    swapped = client.predict(a, b, [1, 3], STEPS, 0, False, api_name="/swap")
    expected = editor.swap(read_image(image_files[0]), read_image(image_files[1]), [1, 3])
    np.testing.assert_array_equal((read_image(swapped) * 255).round(), (expected * 255).round())
    gallery = client.predict(a, 2, -1.0, 1.0, 3, STEPS, 0, False, api_name="/traverse")
    assert [frame["caption"] for frame in gallery] == ["concept 2 = -1.00", "concept 2 = 0.00", "concept 2 = 1.00"]
    grid = client.predict(a, STEPS, 0, api_name="/attention")
    with PIL.Image.open(grid) as picture:
        assert picture.size == (11 * 160, 160 + 22)
    with pytest.raises(AppError, match="tick at least one concept"):
        client.predict(a, b, [], STEPS, 0, False, api_name="/swap")
    # "invert first": the endpoints take the switch (and /decode the source image) and edit from the inverted noise
    inverted = client.predict(a, b, [1, 3], STEPS, 0, True, api_name="/swap")
    expected = editor.swap(read_image(image_files[0]), read_image(image_files[1]), [1, 3], invert=True)
    np.testing.assert_array_equal((read_image(inverted) * 255).round(), (expected * 255).round())
    concepts = editor.encode(read_image(image_files[0]))
    kept = client.predict(*concepts, STEPS, 0, True, a, api_name="/decode")
    expected = editor.decode(concepts, invert=True, image=read_image(image_files[0]))
    np.testing.assert_array_equal((read_image(kept) * 255).round(), (expected * 255).round())


# ---------------------------------------------------------------- the command line


def test_cli_edit_launches_the_editor_with_the_cards_data(tmp_path, monkeypatch, editor):
    import concept_diffusion.app.demo as demo_module
    from concept_diffusion.cli import main
    from concept_diffusion.cli.edit import load_editor_data

    folder = tmp_path / "pipeline"
    editor.pipe.save_pretrained(folder)
    assert load_editor_data(editor.pipe, str(folder)) is None  # no model card
    (folder / "README.md").write_text("---\ndatasets:\n- shapes3d-procedural\n---\n# a model\n")
    launched = {}
    monkeypatch.setattr(demo_module, "launch_demo", lambda demo, **kwargs: launched.update(demo=demo, **kwargs))
    assert main(["edit", str(folder), "--max-steps", "3", "--port", "7999"]) == 0
    demo = launched.pop("demo")
    assert launched == {"server_name": "127.0.0.1", "server_port": 7999, "share": False}
    assert demo.editor.max_steps == 3 and len(demo.editor.examples) == 8 and not demo.editor.invert
    assert main(["edit", str(folder), "--invert", "--data", "none"]) == 0
    assert launched.pop("demo").editor.invert  # edits start from the inverted noise
    assert all(label.startswith("concept") for label in demo.editor.labels)
    assert load_editor_data(editor.pipe, str(folder), "none") is None
    (folder / "README.md").write_text("---\ndatasets:\n- user/some-hub-dataset\n---\n")
    assert load_editor_data(editor.pipe, str(folder)) is None  # a download is never implied
