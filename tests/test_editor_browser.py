"""The concept editor in a real browser: Debian's chromium driven by playwright, with no network."""

import io
import os
import shutil
import socket

import numpy as np
import PIL.Image
import pytest


def _browser_missing():
    try:
        import gradio  # noqa: F401
        import playwright.sync_api  # noqa: F401
    except ImportError as error:
        return f"{error.name} is not installed: pip install -e '.[test]'"
    if shutil.which("/usr/bin/chromium") is None and shutil.which("chromium") is None:
        return "chromium is not installed: apt-get install chromium"
    return None


MISSING = _browser_missing()
if MISSING and os.environ.get("CI"):
    raise RuntimeError(f"the browser tests must run on CI, but {MISSING} (.ci/run installs it)")
pytestmark = pytest.mark.skipif(MISSING is not None, reason=str(MISSING))

STEPS = 2


@pytest.fixture(scope="module")
def editor():
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    from concept_diffusion import build_pipeline
    from concept_diffusion.app import ConceptEditor
    from concept_diffusion.data import load_ground_truth

    data = load_ground_truth("shapes3d-procedural", image_size=32)
    return ConceptEditor(build_pipeline("tiny", seed=5), data=data, default_steps=STEPS, max_steps=4, num_reference_images=200)


@pytest.fixture(scope="module")
def url(editor):
    from concept_diffusion.app import build_demo
    from concept_diffusion.app.demo import launch_demo

    demo = build_demo(editor)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch_demo(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def image_files(editor, tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser-uploads")
    paths = []
    for i, image in enumerate(editor.examples[:2]):
        path = folder / f"upload{i}.png"
        PIL.Image.fromarray((image * 255).round().astype(np.uint8)).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def browser_page(url):
    from concept_diffusion.app.browser import open_page, wait_for_editor

    with open_page(url) as (page, refused):
        wait_for_editor(page)
        yield page, refused


def shown_image(page, selector) -> np.ndarray:
    """The pixels of the image an <img> shows, fetched from the app as the browser did."""
    source = page.get_attribute(selector, "src")
    body = page.request.get(source).body()
    with PIL.Image.open(io.BytesIO(body)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float32)


def as_8bit(image: np.ndarray) -> np.ndarray:
    return (image * 255).round()


def read(path) -> np.ndarray:
    with PIL.Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float32) / 255


def test_page_loads_offline_and_shows_the_sliders(browser_page, editor):
    page, refused = browser_page
    assert page.locator("input[type=range][aria-label^='range slider for concept']").count() == editor.num_concepts
    for i, label in enumerate(editor.labels):
        assert page.locator(f"#concept-{i}").inner_text().startswith(label)
    assert not page.get_by_text("Loading", exact=False).is_visible()
    assert refused == [], f"the page tried to reach other hosts: {refused}"


def test_uploading_an_image_fills_the_sliders(browser_page, editor, image_files):
    page, _ = browser_page
    page.set_input_files("#edit-input input[type=file]", image_files[0])
    expected = [round(v, 3) for v in editor.encode(read(image_files[0]))]
    page.wait_for_function(
        "expected => expected.every((v, i) => Math.abs(Number(document.querySelector(`#concept-${i} input[type=number]`).value) - v) < 1e-6)",
        arg=expected, timeout=120_000)
    page.wait_for_selector("#edit-output img", state="visible", timeout=120_000)
    np.testing.assert_array_equal(shown_image(page, "#edit-output img"), as_8bit(editor.decode(editor.encode(read(image_files[0])))))


def test_moving_a_slider_changes_the_image(browser_page, editor):
    page, _ = browser_page
    before_source = page.get_attribute("#edit-output img", "src")
    before = shown_image(page, "#edit-output img")
    track = page.locator("#concept-1 input[type=range]").bounding_box()
    page.mouse.click(track["x"] + track["width"] * 0.98, track["y"] + track["height"] / 2)  # press and release near the end
    page.wait_for_function("old => document.querySelector('#edit-output img').src !== old", arg=before_source, timeout=120_000)
    moved = float(page.input_value("#concept-1 input[type=number]"))
    concepts = [float(page.input_value(f"#concept-{i} input[type=number]")) for i in range(editor.num_concepts)]
    assert moved == pytest.approx(concepts[1]) and moved > editor.statistics.ranges[1].mean()
    after = shown_image(page, "#edit-output img")
    assert np.abs(after - before).max() > 0
    np.testing.assert_array_equal(after, as_8bit(editor.decode(concepts)))


def test_picking_an_example_encodes_it(browser_page, editor):
    page, _ = browser_page
    page.locator("#examples button").nth(1).click()
    expected = [round(v, 3) for v in editor.encode(editor.examples[1])]
    page.wait_for_function(
        "expected => expected.every((v, i) => Math.abs(Number(document.querySelector(`#concept-${i} input[type=number]`).value) - v) < 1e-6)",
        arg=expected, timeout=120_000)


def test_swap_in_the_browser(browser_page, editor, image_files):
    page, _ = browser_page
    page.get_by_role("tab", name="Swap").click()
    page.set_input_files("#swap-a input[type=file]", image_files[0])
    page.set_input_files("#swap-b input[type=file]", image_files[1])
    page.locator("#swap-concepts label").nth(2).click()  # concept 0 is ticked already; add concept 2
    page.click("#swap-button")
    page.wait_for_selector("#swap-output img", state="visible", timeout=120_000)
    expected = editor.swap(read(image_files[0]), read(image_files[1]), [0, 2])
    np.testing.assert_array_equal(shown_image(page, "#swap-output img"), as_8bit(expected))


def test_screenshot_of_the_editor(browser_page, url, image_files, tmp_path):
    from concept_diffusion.app.browser import screenshot_editor

    page, refused = browser_page
    page.goto(url)
    path = tmp_path / "editor.png"
    screenshot_editor(page, image_files[1], str(path))
    assert refused == []
    with PIL.Image.open(path) as shot:
        pixels = np.asarray(shot.convert("RGB"), dtype=np.float32)
    assert shot.size[0] == 1280 and shot.size[1] >= 1000
    assert pixels.std() > 10  # a rendered page, not a blank one
