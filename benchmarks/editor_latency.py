"""Response time of a slider edit in the concept editor.

A slider edit decodes the edited concepts from fixed noise. Measured two ways, each the median
(and 90th percentile) of repeated edits after a warm-up, each edit moving a different concept:
- handler: `ConceptEditor.decode` alone (the model's work);
- api: the app's `/decode` endpoint through gradio_client on 127.0.0.1, as the browser calls it
  (queue, JSON, PNG encoding and the download of the image included).

    python benchmarks/editor_latency.py                               # cpu preset, 10/20/50 steps
    python benchmarks/editor_latency.py --model outputs/quickstart/pipeline --steps 20 --repeats 20 --out /tmp/latency.json

The `cpu` preset's weights are untrained unless --model is given: the time does not depend on them.
"""

import argparse
import os
import platform
import socket
import statistics
import tempfile
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from concept_diffusion import build_pipeline  # noqa: E402
from concept_diffusion.app import ConceptEditor, build_demo  # noqa: E402
from concept_diffusion.app.demo import launch_demo  # noqa: E402
from concept_diffusion.atomic import write_json  # noqa: E402
from concept_diffusion.data import load_ground_truth  # noqa: E402
from concept_diffusion.pipelines import ConceptDiffusionPipeline  # noqa: E402


def percentiles(times):
    return {"median_s": statistics.median(times), "p90_s": float(np.percentile(times, 90)), "repeats": len(times)}


def edits(editor, concepts, repeats):
    """`repeats` edited concept vectors, within the sliders' ranges: concept k moved to the top of its range, k cycling."""
    low, high = editor.statistics.ranges.round(3).T
    for i in range(repeats):
        edited = np.clip(np.round(concepts, 3), low, high)
        k = i % editor.num_concepts
        edited[k] = high[k]
        yield edited.tolist()


def time_handler(editor, concepts, steps, repeats):
    editor.decode(concepts, steps)  # warm-up
    times = []
    for edited in tqdm(list(edits(editor, concepts, repeats)), desc=f"handler, {steps} steps", leave=False):
        start = time.perf_counter()
        editor.decode(edited, steps)
        times.append(time.perf_counter() - start)
    return percentiles(times)


def time_api(client, editor, concepts, steps, repeats):
    client.predict(*next(edits(editor, concepts, 1)), steps, 0, False, None, api_name="/decode")  # warm-up; fresh noise, no image
    times = []
    for edited in tqdm(list(edits(editor, concepts, repeats)), desc=f"api, {steps} steps", leave=False):
        start = time.perf_counter()
        client.predict(*edited, steps, 0, False, None, api_name="/decode")
        times.append(time.perf_counter() - start)
    return percentiles(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="a saved pipeline (default: the untrained cpu preset)")
    parser.add_argument("--preset", default="cpu", help="preset when no --model is given (default cpu)")
    parser.add_argument("--steps", default="10,20,50", help="comma-separated denoising steps (default 10,20,50; 20 is the editor's default)")
    parser.add_argument("--data", default="shapes3d-procedural", help="data for the example image and slider ranges")
    parser.add_argument("--repeats", type=int, default=10, help="timed edits per setting (default 10)")
    parser.add_argument("--out", default="benchmarks/results/editor_latency.json", help="JSON to write")
    args = parser.parse_args()

    from gradio_client import Client

    pipe = ConceptDiffusionPipeline.from_pretrained(args.model) if args.model else build_pipeline(args.preset)
    steps_list = [int(s) for s in args.steps.split(",")]
    size = pipe.concept_encoder.config.sample_size
    data = load_ground_truth(args.data, image_size=size)
    editor = ConceptEditor(pipe, data=data, max_steps=max(steps_list), num_reference_images=300)
    concepts = editor.encode(editor.examples[0])

    demo = build_demo(editor)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch_demo(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=tempfile.mkdtemp(prefix="editor-latency-"))
    rows = []
    try:
        for steps in steps_list:
            rows.append({"steps": steps, "handler": time_handler(editor, concepts, steps, args.repeats),
                         "api": time_api(client, editor, concepts, steps, args.repeats)})
    finally:
        demo.close()

    print(f"\nslider edit on {args.model or args.preset} ({pipe.concept_encoder.config.num_concepts} concepts, {size}x{size}), "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'steps':>5}  {'handler median':>14}  {'handler p90':>11}  {'api median':>10}  {'api p90':>8}")
    for row in rows:
        print(f"{row['steps']:>5}  {row['handler']['median_s']:>13.3f}s  {row['handler']['p90_s']:>10.3f}s  "
              f"{row['api']['median_s']:>9.3f}s  {row['api']['p90_s']:>7.3f}s")
    write_json(args.out, {"model": args.model or args.preset, "torch_threads": torch.get_num_threads(),
                          "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                          "torch": torch.__version__, "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
