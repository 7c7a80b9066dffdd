"""The Gradio app around `ConceptEditor`: Edit, Swap, Traverse and Attention tabs.

Every event has an `api_name`, so the running app is also an API (`gradio_client.Client(url)`).
It needs no network: Gradio's bundled fonts and scripts, no analytics.
"""

import math
import os
import tempfile

import gradio as gr
import numpy as np
import PIL.Image

from concept_diffusion.app.editor import ConceptEditor


def _outward(lows, highs) -> tuple:
    """`lows` rounded down and `highs` up to three decimals: slider bounds that keep each exact value inside."""
    return [math.floor(float(v) * 1000) / 1000 for v in lows], [math.ceil(float(v) * 1000) / 1000 for v in highs]


# The model's images are 32 or 64 pixels: show them large, with sharp pixels.
EDITOR_CSS = ".pixelated img { image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain; }"
IMAGE_HEIGHT = 256


def _as_user_error(function):
    """Show bad input (a ValueError naming it) as a Gradio message instead of a bare 'Error'."""

    def handler(*args):
        try:
            return function(*args)
        except (ValueError, TypeError) as error:
            raise gr.Error(str(error)) from error

    handler.__name__ = function.__name__
    handler.__doc__ = function.__doc__
    return handler


def _image(label: str, interactive: bool, **kwargs):
    return gr.Image(label=label, type="numpy", image_mode=None, format="png", interactive=interactive, height=IMAGE_HEIGHT,
                    elem_classes=["pixelated"], **kwargs)


def _example_files(editor: ConceptEditor) -> list:
    """Example images as PNG files, which gr.Examples shows as thumbnails."""
    if not editor.examples:
        return []
    folder = tempfile.mkdtemp(prefix="concept-editor-examples-")
    paths = []
    for i, example in enumerate(editor.examples):
        path = os.path.join(folder, f"example{i}.png")
        pixels = (np.clip(example, 0, 1) * 255).round().astype(np.uint8)
        PIL.Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(path)
        paths.append(path)
    return paths


def _edit_tab(editor: ConceptEditor, quality):
    steps, seed, invert = quality
    with gr.Row():
        with gr.Column():
            source = _image("image (upload or pick an example)", True, sources=["upload", "clipboard"], elem_id="edit-input")
            examples = _example_files(editor)
            if examples:
                gr.Examples(examples=[[path] for path in examples], inputs=[source], label="examples from the data", elem_id="examples")
        with gr.Column():
            edited = _image("edited", False, elem_id="edit-output")
            reset = gr.Button("reset to the image's concepts", elem_id="reset")
            if editor.can_sample:
                random = gr.Button("random: draw new concepts from the prior", elem_id="random")
    sliders = []
    # Three decimals, rounded outward: every concept value seen on the data stays inside its slider.
    low, high = _outward(editor.statistics.ranges[:, 0], editor.statistics.ranges[:, 1])
    high = [max(h, l + 0.01) for l, h in zip(low, high)]  # a concept that never moves still gets a slider
    with gr.Row():
        for i, label in enumerate(editor.labels):
            sliders.append(gr.Slider(low[i], high[i], value=round((low[i] + high[i]) / 2, 3), step=0.001,
                                     label=label, elem_id=f"concept-{i}", min_width=220))
    with gr.Accordion("concept values of the image", open=False):
        encoded = gr.JSON(label="concepts", elem_id="concepts")

    def encode(image, num_steps, noise_seed, invert_first):
        if image is None:  # the image was cleared
            return [None, None, *[gr.update() for _ in sliders]]
        concepts = editor.encode(image)
        return [concepts, editor.decode(concepts, num_steps, noise_seed, invert_first, image), *_slider_updates(concepts)]

    def _slider_updates(concepts):
        # Three decimals are finer than any visible change, and keep the number boxes readable.
        values = [round(v, 3) for v in concepts]
        lowest, highest = _outward(concepts, concepts)  # the bounds take the exact value, which /decode may be sent
        return [gr.update(value=v, minimum=min(low[i], lowest[i]), maximum=max(high[i], highest[i])) for i, v in enumerate(values)]

    def decode(*values):
        *concepts, num_steps, noise_seed, invert_first, image = values
        return editor.decode(concepts, num_steps, noise_seed, invert_first, image)

    def reset_concepts(concepts, num_steps, noise_seed, invert_first, image):
        if not concepts:
            raise ValueError("no image yet: upload an image or pick an example first")
        return [editor.decode(concepts, num_steps, noise_seed, invert_first, image), *_slider_updates(concepts)]

    source.change(_as_user_error(encode), inputs=[source, steps, seed, invert], outputs=[encoded, edited, *sliders], api_name="encode")
    gr.on([slider.release for slider in sliders], _as_user_error(decode), inputs=[*sliders, steps, seed, invert, source],
          outputs=[edited], api_name="decode", trigger_mode="always_last")
    reset.click(_as_user_error(reset_concepts), inputs=[encoded, steps, seed, invert, source], outputs=[edited, *sliders],
                api_name="reset")

    def draw_random(num_steps, noise_seed):
        # New concepts have no image to invert: they decode from fresh noise, and "invert first" turns off.
        concepts = editor.random_concepts(noise_seed)
        return [concepts, editor.decode(concepts, num_steps, noise_seed, False), gr.update(value=False), *_slider_updates(concepts)]

    if editor.can_sample:
        random.click(_as_user_error(draw_random), inputs=[steps, seed], outputs=[encoded, edited, invert, *sliders], api_name="random")


def _swap_tab(editor: ConceptEditor, quality):
    with gr.Row():
        image_a = _image("image A", True, elem_id="swap-a")
        image_b = _image("image B (gives the chosen concepts)", True, elem_id="swap-b")
        swapped = _image("A with B's concepts", False, elem_id="swap-output")
    choices = [(label, i) for i, label in enumerate(editor.labels)]
    chosen = gr.CheckboxGroup(choices=choices, value=[0], label="concepts to take from B", elem_id="swap-concepts")
    button = gr.Button("swap", variant="primary", elem_id="swap-button")
    button.click(_as_user_error(editor.swap), inputs=[image_a, image_b, chosen, *quality], outputs=[swapped], api_name="swap")


def _traverse_tab(editor: ConceptEditor, quality):
    ranges = editor.statistics.ranges
    with gr.Row():
        image = _image("image", True, elem_id="traverse-input")
        with gr.Column():
            concept = gr.Dropdown(choices=[(label, i) for i, label in enumerate(editor.labels)], value=0, label="concept")
            low = gr.Number(value=round(float(ranges[:, 0].min()), 3), label="from")
            high = gr.Number(value=round(float(ranges[:, 1].max()), 3), label="to")
            count = gr.Slider(2, 16, value=8, step=1, label="values")
            button = gr.Button("traverse", variant="primary", elem_id="traverse-button")
    gallery = gr.Gallery(label="traversal", columns=8, height=IMAGE_HEIGHT, elem_classes=["pixelated"], elem_id="traverse-output")
    concept.change(lambda index: [round(float(ranges[index, 0]), 3), round(float(ranges[index, 1]), 3)], inputs=[concept],
                   outputs=[low, high], api_name="concept_range")
    button.click(_as_user_error(editor.traverse), inputs=[image, concept, low, high, count, *quality], outputs=[gallery],
                 api_name="traverse")


def _attention_tab(editor: ConceptEditor, quality):
    with gr.Row():
        image = _image("image", True, elem_id="attention-input")
        button = gr.Button("show attention", variant="primary", elem_id="attention-button", scale=0)
    gr.Markdown("Each concept token's cross-attention over the image while the model redraws it, averaged over heads, "
                "layers and steps (bright: the concept this region attends to most).")
    grid = gr.Image(label="attention maps", show_label=False, type="pil", format="png", interactive=False, elem_id="attention-output")
    button.click(_as_user_error(editor.attention), inputs=[image, *quality[:2]], outputs=[grid], api_name="attention")


def build_demo(pipe_or_editor, data=None, max_steps=None, invert: bool = False, title: str = "EncDiff concept editor") -> gr.Blocks:
    """The concept editor as a `gr.Blocks`; launch it with `launch_demo(demo)`.

    Args:
        pipe_or_editor: a `ConceptDiffusionPipeline`, or a `ConceptEditor` built from one.
        data: optional `GroundTruthData` (for a pipeline): examples, slider ranges and factor labels.
        max_steps: cap on the denoising steps (the quality setting), for CPU users.
        invert: start with "invert first" on (for a pipeline; a `ConceptEditor` carries its own).

    Example:
        >>> demo = build_demo(ConceptDiffusionPipeline.from_pretrained("outputs/quickstart/pipeline"))
        >>> launch_demo(demo, server_port=7860)
    """
    if isinstance(pipe_or_editor, ConceptEditor):
        if data is not None or max_steps is not None or invert:
            raise ValueError("data, max_steps and invert belong to the ConceptEditor: pass them when building it")
        editor = pipe_or_editor
    else:
        editor = ConceptEditor(pipe_or_editor, data=data, max_steps=max_steps, invert=invert)
    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        gr.Markdown(f"## {title}\nEncode an image into its {editor.num_concepts} concepts, move them, swap them between "
                    "images, sweep one, and see where each concept token attends. Every result starts from the same noise.")
        with gr.Row():
            steps = gr.Slider(1, editor.max_steps, value=editor.default_steps, step=1, label="denoising steps (quality)", elem_id="steps")
            seed = gr.Number(value=editor.seed, precision=0, label="noise seed", elem_id="seed")
            invert = gr.Checkbox(value=editor.invert, label="invert first: start from the image's own noise, so edits keep "
                                 "what the concepts do not carry", elem_id="invert")
        quality = (steps, seed, invert)
        with gr.Tab("Edit"):
            _edit_tab(editor, quality)
        with gr.Tab("Swap"):
            _swap_tab(editor, quality)
        with gr.Tab("Traverse"):
            _traverse_tab(editor, quality)
        with gr.Tab("Attention"):
            _attention_tab(editor, quality)
    demo.editor = editor
    return demo


def launch_demo(demo: gr.Blocks, **kwargs):
    """`demo.launch(**kwargs)` with the editor's CSS and its errors shown to the user."""
    kwargs.setdefault("show_error", True)
    return demo.launch(css=EDITOR_CSS, **kwargs)
