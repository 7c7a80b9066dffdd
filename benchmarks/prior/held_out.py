"""Combinations never seen: does a model trained without a block of factor combinations make them when asked?

Train on shapes3d-procedural with a block left out (`concept-diffusion train --held-out "shape=sphere;floor_hue=0,1,9"`:
no sphere on the three reddest floors), then ask the trained pipeline for the block in two ways, and do the same for
a control block of the same size that was in the training data (e.g. cubes on the same floors):

- **swaps**: for each factor f of the block, a source inside the block in every other factor but outside it in f,
  and a reference inside it in f but outside it in the others (so neither image is in the block); the concepts that
  carry f (the concept-factor map's labels) are copied from the reference (`pipe.swap`, pairwise). A hit: the
  fidelity benchmark's supervised reader (`../fidelity/factor_reader.py`, trained on the whole grid, independent of
  the model) finds the block's combination that was asked for; "exact" also needs every other factor kept.
- **samples**: `--num-samples` images from the `independent` concept prior (`pipe.sample`): the fraction the reader
  puts in the block, against the block's share of the grid (what uniform draws give), with their validity (PSNR to
  the exact image of the factors read >= `--valid-db`); the `empirical` prior (whole concept vectors of training
  images) as the reference that cannot leave the training data.

    python benchmarks/prior/held_out.py --model RUN/pipeline --held-out "shape=sphere;floor_hue=0,1,9" \\
        --control "shape=cube;floor_hue=0,1,9" --name held_out_spheres_red_floors

Prints a table, writes results/held_out_NAME.json and results/held_out_NAME.png (the unseen combinations it made).
"""

import argparse
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "fidelity"))
sys.path.insert(0, HERE)

from factor_reader import DATA, SIZE, load_reader  # noqa: E402
from fidelity import generator, noises  # noqa: E402
from sample_quality import sample_and_read  # noqa: E402

SEED = 20261208  # no training run draws from it


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--model", required=True, help="a pipeline trained with --held-out")
    parser.add_argument("--held-out", required=True, help="the block left out of its training, as given to training")
    parser.add_argument("--control", required=True, help="a block of the same size that was in the training data")
    parser.add_argument("--name", default="held_out", help="names the result files")
    parser.add_argument("--pairs", type=int, default=64, help="swaps per factor of each block")
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps of the swaps and samples")
    parser.add_argument("--num-samples", type=int, default=1024, help="samples per prior kind")
    parser.add_argument("--valid-db", type=float, default=25.0, help="PSNR to the exact image of the read factors that counts as valid")
    parser.add_argument("--map-points", type=int, default=2000, help="images of the concept-factor map (which concepts carry a factor)")
    parser.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)
    if min(args.pairs, args.steps, args.num_samples, args.map_points) < 1:
        parser.error("--pairs, --steps, --num-samples and --map-points must be >= 1")
    return args


def block_pairs(data, block: dict, factor: int, count: int, seed: int) -> tuple:
    """Sources and references (count, K) outside `block`, whose swap of `factor` lands in it, and the factors asked for."""
    rng = np.random.RandomState(seed)
    sources, references = data.sample_factors(count, rng), data.sample_factors(count, rng)
    for other, values in block.items():
        outside = np.setdiff1d(np.arange(data.factor_sizes[other]), values)
        inside_for, outside_for = (references, sources) if other == factor else (sources, references)
        inside_for[:, other] = rng.choice(values, count)
        outside_for[:, other] = rng.choice(outside, count)
    asked = sources.copy()
    asked[:, factor] = references[:, factor]
    return sources, references, asked


def swap_rows(pipe, reader, data, block: dict, labels: list, args, which: str) -> tuple:
    """One row per factor of the block and noise (fresh, inverted): hit and exact rates; and the first swaps to show."""
    from concept_diffusion.training.data import in_block

    rows, shown = [], {}
    for factor in block:
        name = data.factor_names[factor]
        carriers = [i for i, label in enumerate(labels) if label == name]
        if not carriers:
            rows.append({"block": which, "factor": name, "note": "no concept carries it"})
            continue
        sources, references, asked = block_pairs(data, block, factor, args.pairs, SEED + factor + (100 if which == "control" else 0))
        source_images, reference_images = (np.asarray(data.sample_observations_from_factors(f, np.random.RandomState(0)), dtype=np.float32)
                                           for f in (sources, references))
        for noise, latents in noises(pipe, source_images, args.steps).items():
            edited = pipe.swap(source_images, reference_images, concept_indices=carriers, pairwise=True, latents=latents,
                               num_inference_steps=args.steps, generator=generator(), output_type="np").images[:, 0]
            read = reader.read(edited)
            hit = in_block(read, block) & (read[:, list(block)] == asked[:, list(block)]).all(1)
            rows.append({"block": which, "factor": name, "concepts": carriers, "noise": noise, "pairs": args.pairs,
                         "hit": round(float(hit.mean()), 4), "exact": round(float((hit & (read == asked).all(1)).mean()), 4)})
            shown[(which, name, noise)] = (source_images[:8], reference_images[:8], edited[:8])
    return rows, shown


def sample_rows(pipe, reader, data, blocks: dict, args) -> tuple:
    """Per prior kind and block: the share of samples the reader puts in the block, and their validity."""
    from concept_diffusion.training.data import in_block

    rows, inside_held_out = [], None
    for kind in ("independent", "empirical"):
        images, read, psnr = sample_and_read(pipe, reader, data, kind, args.num_samples, args.steps, SEED)
        for which, block in blocks.items():
            inside = in_block(read, block)
            grid_share = float(np.prod([len(values) / data.factor_sizes[f] for f, values in block.items()]))
            rows.append({"block": which, "prior": kind, "samples": args.num_samples, "in_block": int(inside.sum()),
                         "share": round(float(inside.mean()), 4), "grid_share": round(grid_share, 4),
                         "valid_in_block": round(float((psnr[inside] >= args.valid_db).mean()), 4) if inside.any() else None,
                         "valid_all": round(float((psnr >= args.valid_db).mean()), 4)})
            if kind == "independent" and which == "held_out":
                inside_held_out = images[inside & (psnr >= args.valid_db)][:8]
    return rows, inside_held_out


def picture(shown: dict, sampled: np.ndarray, steps: int, title: str, path: str) -> None:
    """For each block factor's swaps from inverted noise: sources, references, swaps; then valid samples in the held-out block."""
    import PIL.Image

    from concept_diffusion.atomic import atomic_path
    from concept_diffusion.training.visualize import labelled_grid

    rows = []
    for (which, name, noise), (sources, references, edited) in shown.items():
        if noise == "inverted":
            rows += [(f"{which}: source", sources), (f"reference\n(its {name})", references), (f"swap {name}\n({steps} steps)", edited)]
    if sampled is not None and len(sampled):
        rows.append(("independent prior:\nsamples in the\nheld-out block", sampled))
    cols = min(len(batch) for _, batch in rows)
    tiles = [PIL.Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8)) for _, batch in rows for image in batch[:cols]]
    grid = labelled_grid(tiles, rows=len(rows), cols=cols, row_labels=[label for label, _ in rows], scale=3, title=title)
    with atomic_path(path, ".png") as temporary:
        grid.save(temporary)


def main(argv=None) -> dict:
    from concept_diffusion import ConceptDiffusionPipeline, load_ground_truth
    from concept_diffusion.atomic import write_json
    from concept_diffusion.evaluation.concept_factors import map_concepts
    from concept_diffusion.training.data import parse_held_out

    args = parse_args(argv)
    torch.set_num_threads(1)
    pipe = ConceptDiffusionPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    if pipe.concept_prior is None:
        raise SystemExit(f"{args.model} has no concept prior: fit one with `concept-diffusion fit-prior {args.model} --data {DATA}`")
    data, reader = load_ground_truth(DATA, image_size=SIZE), load_reader()
    blocks = {"held_out": parse_held_out(args.held_out, data), "control": parse_held_out(args.control, data)}
    labels = map_concepts(pipe, data, num_points=args.map_points, seed=0)["labels"]
    started, swaps, shown = time.monotonic(), [], {}
    for which, block in blocks.items():
        rows, pictures = swap_rows(pipe, reader, data, block, labels, args, which)
        swaps += rows
        shown.update(pictures)
    samples, sampled = sample_rows(pipe, reader, data, blocks, args)
    result = {"command": "python benchmarks/prior/held_out.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "model": os.path.abspath(args.model), "held_out": args.held_out, "control": args.control, "concept_labels": labels,
              "reader_accuracy": reader.accuracy, "swaps": swaps, "samples": samples, "seconds": round(time.monotonic() - started, 1)}
    print(f"{'block':>9} {'swap of':>12} {'noise':>9} {'hit':>6} {'exact':>6}")
    for row in swaps:
        print(f"{row['block']:>9} {row['factor']:>12} " + (f"{row['noise']:>9} {row['hit']:>6.3f} {row['exact']:>6.3f}" if "hit" in row else row["note"]))
    print(f"\n{'block':>9} {'prior':>12} {'in block':>9} {'share':>6} {'grid':>6} {'valid':>6}")
    for row in samples:
        valid = "-" if row["valid_in_block"] is None else f"{row['valid_in_block']:.3f}"
        print(f"{row['block']:>9} {row['prior']:>12} {row['in_block']:>9} {row['share']:>6.3f} {row['grid_share']:>6.3f} {valid:>6}")
    write_json(os.path.join(args.out_dir, f"held_out_{args.name}.json"), result)
    picture(shown, sampled, args.steps, f"{args.name}: asked for combinations held out of training ({args.held_out})",
            os.path.join(args.out_dir, f"held_out_{args.name}.png"))
    return result


if __name__ == "__main__":
    main()
