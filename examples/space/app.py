"""A Hugging Face Space (or local) app: the EncDiff concept editor on a trained pipeline.

The model is `CONCEPT_DIFFUSION_MODEL` (a Hub repo id or a folder) when set, else the pipeline this
repository ships in examples/models/encdiff-shapes3d-procedural/. `CONCEPT_DIFFUSION_DATA` names the
data for examples, slider ranges and factor names (default: the one in the model card, when it needs
no download; "none" for none). `CONCEPT_DIFFUSION_MAX_STEPS` caps the denoising steps (default 50).

    python examples/space/app.py                      # then open http://127.0.0.1:7860
"""

import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from concept_diffusion.app import build_demo  # noqa: E402
from concept_diffusion.app.demo import launch_demo  # noqa: E402
from concept_diffusion.cli.edit import load_editor_data  # noqa: E402
from concept_diffusion.pipelines import ConceptDiffusionPipeline  # noqa: E402

SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "models" / "encdiff-shapes3d-procedural"


def model_source() -> str:
    source = os.environ.get("CONCEPT_DIFFUSION_MODEL")
    if source:
        return source
    if not SHIPPED_MODEL.is_dir():
        raise SystemExit(f"{SHIPPED_MODEL} is missing: set CONCEPT_DIFFUSION_MODEL to a Hub repo id or a pipeline folder")
    return str(SHIPPED_MODEL)


def main() -> None:
    source = model_source()
    pipe = ConceptDiffusionPipeline.from_pretrained(source)
    data = load_editor_data(pipe, source, os.environ.get("CONCEPT_DIFFUSION_DATA") or None)
    max_steps = int(os.environ.get("CONCEPT_DIFFUSION_MAX_STEPS", "50"))
    demo = build_demo(pipe, data=data, max_steps=max_steps)
    # A Space serves on 0.0.0.0:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT are set there).
    launch_demo(demo, server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))


if __name__ == "__main__":
    main()
