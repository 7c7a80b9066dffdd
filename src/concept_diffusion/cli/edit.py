"""`concept-diffusion edit`: the interactive concept editor (Gradio, the `[app]` extra)."""

import os


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "edit", help="open the concept editor in the browser: move, swap and sweep concepts, see attention maps",
        description="Launch the Gradio concept editor on a saved pipeline. Needs the [app] extra "
                    "(pip install 'concept-diffusion[app]'). Works offline.",
    )
    parser.add_argument("model", metavar="PIPELINE", help="a saved pipeline's folder or Hub repo id")
    parser.add_argument("--data", default=None,
                        help="ground-truth data for examples, slider ranges and factor names (default: the data named in "
                             "the model card, if it can be loaded; 'none' for no data)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="cap on the denoising steps a user can ask for; lower is faster on CPU (default 50)")
    parser.add_argument("--invert", action="store_true",
                        help="start with 'invert first' on: edits start from the image's inverted noise (pipe.invert), so "
                             "they keep what the concepts do not carry; the first decode of each image costs twice as long")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="also open a public Gradio share link (needs network)")
    parser.set_defaults(func=run)


def card_dataset(model: str):
    """The first data set named in the model card of a pipeline folder or Hub repo id, or None."""
    import httpx
    from huggingface_hub import ModelCard
    from huggingface_hub.errors import HfHubHTTPError

    path = os.path.join(model, "README.md") if os.path.isdir(model) else model
    if os.path.isdir(model) and not os.path.isfile(path):
        return None
    try:
        card = ModelCard.load(path)
    except (HfHubHTTPError, httpx.HTTPError, OSError, ValueError):  # no card, or no network: run without data
        return None
    datasets = card.data.to_dict().get("datasets") or []
    return datasets[0] if datasets else None


def load_editor_data(pipe, model: str, data: str = None):
    """`data` (or the data set of the model card of `model`) rendered at the model's resolution, or None.

    Only data that needs no download is taken from the card; `data` may name any source.
    """
    from concept_diffusion.data import list_ground_truth, load_ground_truth

    if data == "none":
        return None
    name = data if data is not None else card_dataset(model)
    if name is None or (data is None and name not in list_ground_truth()):
        return None
    return load_ground_truth(name, image_size=pipe.concept_encoder.config.sample_size)


def run(args) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        from concept_diffusion.app.demo import build_demo, launch_demo
    except ImportError as error:
        raise ValueError(f"the editor needs the [app] extra ({error}): pip install 'concept-diffusion[app]'") from error
    from concept_diffusion.pipelines import ConceptDiffusionPipeline

    pipe = ConceptDiffusionPipeline.from_pretrained(args.model)
    data = load_editor_data(pipe, args.model, args.data)
    demo = build_demo(pipe, data=data, max_steps=args.max_steps, invert=args.invert)
    launch_demo(demo, server_name=args.host, server_port=args.port, share=args.share)
    return 0
