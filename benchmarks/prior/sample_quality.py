"""Are images drawn from a concept prior valid scenes, with new, independent combinations of factors?

For each prior kind (`pipe.sample(..., prior=KIND)`) on a shapes3d-procedural model at 32x32, the sampled images are
read by the fidelity benchmark's supervised factor reader (`benchmarks/fidelity/factor_reader.py`, independent of the
model). Reported per kind:

- validity: the fraction of samples within `--valid-db` dB PSNR of the exact image of the factors the reader finds
  (the procedural renderer draws it), and the median of that PSNR;
- coverage: distinct factor combinations among the N samples, over what N uniform draws from the grid hit on average;
- independence: the mutual information (nats, scikit-learn's plug-in estimate) between each pair of factors among the
  samples, the largest pair, beside the same for N uniform draws from the grid (the estimate's own bias at this N).

A model without a prior gets one fitted on `--prior-images` images of its data first (`fit_concept_prior`).

    python benchmarks/prior/sample_quality.py                                            # the shipped model
    python benchmarks/prior/sample_quality.py --model OLD/pipeline --name old_recipe

Prints a table, writes results/sample_quality_NAME.json and a labelled picture of the first samples of each kind.
"""

import argparse
import itertools
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "fidelity"))

from factor_reader import DATA, SIZE, load_reader  # noqa: E402

SHIPPED = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples", "models", "encdiff-shapes3d-procedural")
KINDS = ("empirical", "independent", "gmm")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--model", default=SHIPPED, help="a saved pipeline folder (default: the shipped model)")
    parser.add_argument("--name", default="shipped", help="names the result files")
    parser.add_argument("--priors", default=",".join(KINDS), help="comma-separated prior kinds")
    parser.add_argument("--num-samples", type=int, default=1024, help="samples per kind")
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps per sample")
    parser.add_argument("--valid-db", type=float, default=25.0, help="PSNR to the exact image of the read factors that counts as valid")
    parser.add_argument("--prior-images", type=int, default=4000, help="images to fit a prior on, for a model without one")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)
    args.priors = [kind.strip() for kind in args.priors.split(",") if kind.strip()]
    if not args.priors or set(args.priors) - set(KINDS) or args.num_samples < 2 or args.steps < 1:
        parser.error(f"--priors takes kinds from {KINDS}; --num-samples >= 2 and --steps >= 1")
    return args


def max_pairwise_information(factors: np.ndarray) -> float:
    from sklearn.metrics import mutual_info_score

    return max(mutual_info_score(factors[:, i], factors[:, j]) for i, j in itertools.combinations(range(factors.shape[1]), 2))


def uniform_reference(data, count: int, seed: int) -> dict:
    """What `count` uniform draws from the factor grid give: distinct combinations hit (expected) and the largest pair MI."""
    grid = int(np.prod(data.factor_sizes))
    factors = data.sample_factors(count, np.random.RandomState(seed))
    return {"expected_distinct": grid * (1 - (1 - 1 / grid) ** count), "max_pair_mi": max_pairwise_information(factors)}


def sample_and_read(pipe, reader, data, kind: str, num_samples: int, steps: int, seed: int) -> tuple:
    """`num_samples` images drawn from the prior `kind` in batches of 128, the factors the reader finds in them, and
    each image's PSNR (dB) to the exact image of those factors."""
    images = []
    for start in range(0, num_samples, 128):
        count = min(128, num_samples - start)
        images.append(pipe.sample(count, prior=kind, num_inference_steps=steps, output_type="np",
                                  generator=torch.Generator().manual_seed(seed + start)).images)
    images = np.concatenate(images)
    read = reader.read(images)
    exact = np.asarray(data.sample_observations_from_factors(read, np.random.RandomState(0)), dtype=np.float32)
    return images, read, 10 * np.log10(1 / np.maximum(((images - exact) ** 2).mean(axis=(1, 2, 3)), 1e-12))


def measure(pipe, reader, data, kind: str, args, reference: dict) -> tuple:
    images, read, psnr = sample_and_read(pipe, reader, data, kind, args.num_samples, args.steps, args.seed)
    distinct = len({tuple(row) for row in read.tolist()})
    row = {"prior": kind, "validity": round(float((psnr >= args.valid_db).mean()), 4), "median_psnr": round(float(np.median(psnr)), 2),
           "distinct_combinations": distinct, "coverage_vs_uniform": round(distinct / reference["expected_distinct"], 4),
           "max_pair_mi": round(max_pairwise_information(read), 4),
           "values_seen": {name: int(len(np.unique(read[:, k]))) for k, name in enumerate(data.factor_names)}}
    return row, images[:8]


def main(argv=None) -> dict:
    import PIL.Image

    from concept_diffusion import ConceptDiffusionPipeline, load_ground_truth
    from concept_diffusion.atomic import atomic_path, write_json
    from concept_diffusion.training.prior import attach_prior, fit_concept_prior
    from concept_diffusion.training.visualize import labelled_grid

    args = parse_args(argv)
    torch.set_num_threads(1)
    pipe = ConceptDiffusionPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    data, reader = load_ground_truth(DATA, image_size=SIZE), load_reader()
    fitted_here = pipe.concept_prior is None
    if fitted_here:
        attach_prior(pipe, fit_concept_prior(pipe, data.sample_observations(args.prior_images, np.random.RandomState(args.seed + 1))))
    reference = uniform_reference(data, args.num_samples, args.seed + 2)
    started, rows, shown = time.monotonic(), [], []
    for kind in args.priors:
        row, first = measure(pipe, reader, data, kind, args, reference)
        rows.append(row)
        shown.append((kind, first))
    result = {"command": "python benchmarks/prior/sample_quality.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "model": os.path.abspath(args.model), "prior_fitted_here": fitted_here, "num_samples": args.num_samples,
              "steps": args.steps, "valid_db": args.valid_db, "uniform_reference": reference, "rows": rows,
              "seconds": round(time.monotonic() - started, 1)}
    print(f"{'prior':>12} {'validity':>8} {'median dB':>9} {'coverage':>8} {'max pair MI':>11}   (uniform draws: MI "
          f"{reference['max_pair_mi']:.3f} nats at N={args.num_samples})")
    for row in rows:
        print(f"{row['prior']:>12} {row['validity']:>8.3f} {row['median_psnr']:>9.2f} {row['coverage_vs_uniform']:>8.3f} {row['max_pair_mi']:>11.3f}")
    write_json(os.path.join(args.out_dir, f"sample_quality_{args.name}.json"), result)
    cols = min(len(first) for _, first in shown)
    tiles = [PIL.Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8)) for _, first in shown for image in first[:cols]]
    grid = labelled_grid(tiles, rows=len(shown), cols=cols, row_labels=[f"prior:\n{kind}" for kind, _ in shown], scale=3,
                         title=f"{args.name}: samples, {args.steps} DDIM steps")
    with atomic_path(os.path.join(args.out_dir, f"sample_quality_{args.name}.png"), ".png") as temporary:
        grid.save(temporary)
    return result


if __name__ == "__main__":
    main()
