"""Take the README's editor screenshot: launch the editor on a pipeline, open it in Debian's chromium,
upload one example image of the data and save the page as a PNG.

    python examples/space/screenshot.py examples/models/encdiff-shapes3d-procedural docs/images/editor.png
"""

import argparse
import os
import socket
import tempfile

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np  # noqa: E402
import PIL.Image  # noqa: E402

from concept_diffusion.app import build_demo  # noqa: E402
from concept_diffusion.app.browser import open_page, screenshot_editor  # noqa: E402
from concept_diffusion.app.demo import launch_demo  # noqa: E402
from concept_diffusion.cli.edit import load_editor_data  # noqa: E402
from concept_diffusion.pipelines import ConceptDiffusionPipeline  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description="screenshot of the concept editor")
    parser.add_argument("model", help="a saved pipeline's folder or Hub repo id")
    parser.add_argument("out", help="PNG to write, e.g. docs/images/editor.png")
    parser.add_argument("--data", default=None, help="data for examples and ranges (default: the model card's)")
    parser.add_argument("--example", type=int, default=0, help="which example image of the data to upload")
    args = parser.parse_args()

    pipe = ConceptDiffusionPipeline.from_pretrained(args.model)
    data = load_editor_data(pipe, args.model, args.data)
    if data is None:
        raise SystemExit("the screenshot needs data for its example image: pass --data, e.g. --data shapes3d-procedural")
    demo = build_demo(pipe, data=data, max_steps=50)
    image_path = os.path.join(tempfile.mkdtemp(prefix="editor-screenshot-"), "example.png")
    example = demo.editor.examples[args.example]
    PIL.Image.fromarray((example * 255).round().astype(np.uint8)).save(image_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch_demo(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        with open_page(f"http://127.0.0.1:{port}/", height=1100) as (page, refused):
            screenshot_editor(page, image_path, args.out)
        if refused:
            raise SystemExit(f"the page tried to reach other hosts: {refused}")
    finally:
        demo.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
