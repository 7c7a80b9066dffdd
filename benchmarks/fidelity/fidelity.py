"""How faithful are a model's images? Reconstructions, swaps and traversals, read back by a supervised factor reader.

On held-out shapes3d-procedural images at 32x32 (drawn with seeds that no training run uses), for a trained pipeline:

1. **Reconstruction**: PSNR and SSIM (torchmetrics) at each of `--steps` DDIM steps, from fresh noise and from the
   image's own inverted noise (`pipe.invert`), and the fraction of each factor that the reader finds kept.
2. **Swaps**: for each factor f, source / reference pairs that differ in f (and in the other factors at random); the
   concepts that carry f (the concept-factor map's labels) are copied from the reference (`pipe.swap`, pairwise).
   Edit accuracy: f takes the reference's value *and* every other factor keeps the source's, both read by the
   reader (each other factor's kept fraction is in the JSON). Re-encoding error: the output's concepts against the
   ones asked for, per concept in units of its spread (std) on the data, averaged over all swaps; reported for the
   worst concept that moves the image (a sweep over its range changes the image by at least `MOVES` on average).
3. **Traversals**: each concept swept over its 5-95% range on the data (`--values` values, `pipe.traverse`): how much
   the image changes from one end to the other, and for a labelled concept the fraction of images whose other
   factors all keep the source's value and the fraction of sweeps that move its factor.

Edits run at `--edit-steps` steps, from fresh noise and from inverted noise. The reader is `factor_reader.py`'s asset
(held-out accuracy >= 0.98 on every factor, in its JSON).

    python benchmarks/fidelity/fidelity.py                                        # the shipped model
    python benchmarks/fidelity/fidelity.py --model RUN/pipeline --name NAME       # another one

Prints the tables, writes results/fidelity_NAME.json and a labelled picture results/fidelity_NAME.png.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from factor_reader import DATA, SIZE, load_reader  # noqa: E402

SHIPPED = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples", "models", "encdiff-shapes3d-procedural")
HELD_OUT_SEED = 20261207  # no training run draws from it
PICTURE_FACTORS = ("floor_hue", "shape", "scale")
MOVES = 0.01  # mean absolute change in [0, 1] (2.5 levels of 255) between a sweep's ends: the concept moves the image


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--model", default=SHIPPED, help="a saved pipeline folder (default: the shipped model)")
    parser.add_argument("--name", default="shipped", help="names the result files")
    parser.add_argument("--images", type=int, default=128, help="held-out images of the reconstruction table")
    parser.add_argument("--steps", default="10,20,50", help="comma-separated DDIM steps of the reconstruction table")
    parser.add_argument("--pairs", type=int, default=64, help="source / reference pairs per factor for the swaps")
    parser.add_argument("--traversal-images", type=int, default=8, help="images swept through each labelled concept")
    parser.add_argument("--values", type=int, default=8, help="values of each sweep")
    parser.add_argument("--edit-steps", type=int, default=20, help="DDIM steps of the swaps and traversals")
    parser.add_argument("--map-points", type=int, default=2000, help="images of the concept-factor map (labels, spreads)")
    parser.add_argument("--scheduler-config", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field of the DDIM scheduler's config (a sampler arm), e.g. timestep_spacing=trailing; "
                             "the value is read as JSON when it parses, else as a string")
    parser.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)
    args.steps = [int(s) for s in args.steps.split(",") if s.strip()]
    args.scheduler_config = dict(scheduler_field(item, parser) for item in args.scheduler_config)
    if min([args.images, args.pairs, args.traversal_images, args.values, args.edit_steps, *args.steps]) < 1:
        parser.error("--images, --pairs, --traversal-images, --values, --edit-steps and every --steps must be >= 1")
    return args


def scheduler_field(item: str, parser) -> tuple:
    key, separator, value = item.partition("=")
    if not separator or not key:
        parser.error(f"--scheduler-config takes KEY=VALUE, got {item!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def held_out(data, count: int, seed: int):
    """(factors (n, K), images (n, H, W, C) float32 in [0, 1]) drawn with `seed`."""
    rng = np.random.RandomState(seed)
    factors = data.sample_factors(count, rng)
    return factors, np.asarray(data.sample_observations_from_factors(factors, rng), dtype=np.float32)


def image_quality(output: np.ndarray, target: np.ndarray) -> dict:
    """Mean per-image PSNR (dB) and SSIM of numpy (B, H, W, C) images in [0, 1]."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    preds, truth = (torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).double() for x in (output, target))
    psnr = peak_signal_noise_ratio(preds, truth, data_range=1.0, reduction="none", dim=(1, 2, 3))
    ssim = structural_similarity_index_measure(preds, truth, data_range=1.0, reduction="none")
    return {"psnr": round(float(psnr.mean()), 3), "ssim": round(float(ssim.mean()), 4)}


def noises(pipe, images: np.ndarray, steps: int) -> dict:
    """{"fresh": None (drawn from a seeded generator), "inverted": the images' inverted noise}."""
    return {"fresh": None, "inverted": pipe.invert(images, num_inference_steps=steps).latents}


def generator():
    return torch.Generator().manual_seed(0)


def reconstruction(pipe, reader, factors, images, steps_list) -> tuple:
    """Rows of PSNR / SSIM / factors kept per steps and noise, and {(steps, noise): the first 8 outputs}."""
    rows, shown = [], {}
    for steps in steps_list:
        started = time.monotonic()
        for noise, latents in noises(pipe, images, steps).items():
            output = pipe(images=images, num_inference_steps=steps, latents=latents, generator=generator(), output_type="np").images
            kept = (reader.read(output) == factors).mean(0)
            rows.append({"steps": steps, "noise": noise, **image_quality(output, images),
                         "factors_kept": dict(zip(reader.factor_names, kept.round(4).tolist())), "factors_kept_mean": round(float(kept.mean()), 4)})
            shown[(steps, noise)] = output[:8]
        rows[-1]["seconds_both"] = round(time.monotonic() - started, 1)
    return rows, shown


def differing_pairs(data, factor: int, count: int, seed: int):
    """Source and reference factors (count, K): random, except that each reference differs from its source in `factor`."""
    rng = np.random.RandomState(seed)
    sources, references = data.sample_factors(count, rng), data.sample_factors(count, rng)
    size = data.factor_sizes[factor]
    same = references[:, factor] == sources[:, factor]
    references[same, factor] = (sources[same, factor] + rng.randint(1, size, same.sum())) % size
    return sources, references


def swaps(pipe, reader, data, labels, spread, moving, steps: int, count: int) -> tuple:
    """Per factor and noise: edit accuracy, moved / kept parts, and the re-encoding error per concept."""
    rows, errors, shown = [], {"fresh": [], "inverted": []}, {}
    for f, name in enumerate(data.factor_names):
        carriers = [i for i, label in enumerate(labels) if label == name]
        if not carriers:
            rows.append({"factor": name, "concepts": [], "note": "no concept carries it"})
            continue
        source_factors, reference_factors = differing_pairs(data, f, count, HELD_OUT_SEED + 10 + f)
        sources = np.asarray(data.sample_observations_from_factors(source_factors, np.random.RandomState(f)), dtype=np.float32)
        references = np.asarray(data.sample_observations_from_factors(reference_factors, np.random.RandomState(f)), dtype=np.float32)
        for noise, latents in noises(pipe, sources, steps).items():
            out = pipe.swap(sources, references, concept_indices=carriers, pairwise=True, num_inference_steps=steps,
                            latents=latents, generator=generator(), output_type="np")
            edited, asked = out.images[:, 0], out.concepts[:, 0]
            read = reader.read(edited)
            moved = read[:, f] == reference_factors[:, f]
            each_kept = np.delete(read, f, 1) == np.delete(source_factors, f, 1)
            kept = each_kept.all(1)
            errors[noise].append(((pipe.encode(edited) - asked).abs() / spread).cpu().numpy())
            rows.append({"factor": name, "concepts": carriers, "noise": noise, "accuracy": round(float((moved & kept).mean()), 4),
                         "moved": round(float(moved.mean()), 4), "others_kept": round(float(kept.mean()), 4),
                         "each_other_kept": dict(zip(np.delete(np.array(data.factor_names), f).tolist(), each_kept.mean(0).round(4).tolist()))})
            if name in PICTURE_FACTORS:
                shown[(name, noise)] = (sources[:8], references[:8], edited[:8])
    reencoding = {}
    for noise, parts in errors.items():
        per_concept = np.concatenate(parts).mean(0)
        worst = max(moving, key=lambda i: per_concept[i])
        reencoding[noise] = {"per_concept": per_concept.round(4).tolist(), "worst_concept": int(worst),
                             "worst": round(float(per_concept[worst]), 4)}
    return rows, reencoding, shown


def traversals(pipe, reader, data, labels, quantiles, steps: int, count: int, num_values: int) -> list:
    factors, images = held_out(data, count, HELD_OUT_SEED + 2)
    rows, latents_by_noise = [], noises(pipe, images, steps)
    for concept, name in enumerate(labels):
        sweep = torch.linspace(float(quantiles[0, concept]), float(quantiles[1, concept]), num_values)
        for noise, latents in latents_by_noise.items():
            out = pipe.traverse(images, concept, values=sweep, num_inference_steps=steps, latents=latents,
                                generator=generator(), output_type="np").images  # (count, V, H, W, C)
            row = {"concept": concept, "factor": name, "noise": noise,
                   "image_change": round(float(np.abs(out[:, -1] - out[:, 0]).mean()), 4)}
            if name != "-":
                f = data.factor_names.index(name)
                read = reader.read(out.reshape(-1, *out.shape[-3:])).reshape(count, num_values, -1)
                kept = (np.delete(read, f, 2) == np.delete(factors, f, 1)[:, None]).all(2)
                moved = np.array([len(np.unique(sweep_read[:, f])) > 1 for sweep_read in read])
                row.update(others_kept=round(float(kept.mean()), 4), factor_moved=round(float(moved.mean()), 4))
            rows.append(row)
    return rows


def picture(images, reconstructions, swapped, steps: int, title: str, path: str) -> None:
    """Inputs and their reconstructions, then for each of PICTURE_FACTORS: sources, references, swaps from fresh and
    from inverted noise; 8 columns, every row labelled."""
    import PIL.Image

    from concept_diffusion.atomic import atomic_path
    from concept_diffusion.training.visualize import labelled_grid

    rows = [("held-out input", images[:8]), (f"reconstruction\nfresh noise, {steps} steps", reconstructions[(steps, "fresh")]),
            (f"reconstruction\ninverted noise", reconstructions[(steps, "inverted")])]
    for name in PICTURE_FACTORS:
        if (name, "fresh") in swapped:
            sources, references, fresh = swapped[(name, "fresh")]
            rows += [(f"source ({name})", sources), ("reference", references), (f"swap {name}\nfresh noise", fresh),
                     (f"swap {name}\ninverted noise", swapped[(name, "inverted")][2])]
    cols = min(len(batch) for _, batch in rows)  # 8, or fewer in a small run
    tiles = [PIL.Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8)) for _, batch in rows for image in batch[:cols]]
    grid = labelled_grid(tiles, rows=len(rows), cols=cols, row_labels=[label for label, _ in rows], scale=3, title=title)
    with atomic_path(path, ".png") as temporary:
        grid.save(temporary)


def print_tables(result: dict) -> None:
    print(f"\nreconstruction ({result['images']} held-out images)")
    print(f"{'steps':>5} {'noise':>9} {'PSNR dB':>8} {'SSIM':>6} {'factors kept':>12}")
    for row in result["reconstruction"]:
        print(f"{row['steps']:>5} {row['noise']:>9} {row['psnr']:>8.2f} {row['ssim']:>6.3f} {row['factors_kept_mean']:>12.3f}")
    print(f"\nswaps ({result['pairs']} pairs per factor, {result['edit_steps']} steps): accuracy (moved / others kept)")
    for row in result["swaps"]:
        if "noise" in row:
            print(f"{row['factor']:>12} {str(row['concepts']):>10} {row['noise']:>9} {row['accuracy']:.3f} ({row['moved']:.3f} / {row['others_kept']:.3f})")
        else:
            print(f"{row['factor']:>12}: {row['note']}")
    for noise, error in result["reencoding_error"].items():
        print(f"re-encoding error, {noise} noise: worst {error['worst']:.3f} spreads (concept {error['worst_concept']})")
    print(f"\ntraversals ({result['traversal_images']} images x {result['values']} values): image change, others kept / factor moved")
    for row in result["traversals"]:
        read = f"{row['others_kept']:.3f} / {row['factor_moved']:.3f}" if "others_kept" in row else "-"
        print(f"concept {row['concept']:>2} {row['factor']:>12} {row['noise']:>9} {row['image_change']:.3f}  {read}")


def main(argv=None) -> dict:
    from concept_diffusion import ConceptDiffusionPipeline, load_ground_truth
    from concept_diffusion.atomic import write_json
    from concept_diffusion.evaluation.concept_factors import map_concepts

    args = parse_args(argv)
    torch.set_num_threads(1)
    pipe = ConceptDiffusionPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    if args.scheduler_config:
        unknown = sorted(set(args.scheduler_config) - set(pipe.scheduler.config))
        if unknown:
            raise SystemExit(f"--scheduler-config: {unknown} are not fields of {type(pipe.scheduler).__name__}'s config")
        pipe.scheduler = type(pipe.scheduler).from_config({**pipe.scheduler.config, **args.scheduler_config})
    data, reader = load_ground_truth(DATA, image_size=SIZE), load_reader()
    concept_map = map_concepts(pipe, data, num_points=args.map_points, seed=0)
    _, map_images = held_out(data, args.map_points, HELD_OUT_SEED + 1)
    concepts = torch.cat([pipe.encode(map_images[i : i + 500]) for i in range(0, len(map_images), 500)])
    spread, quantiles = concepts.std(0), torch.quantile(concepts, torch.tensor([0.05, 0.95]), dim=0)
    factors, images = held_out(data, args.images, HELD_OUT_SEED)
    started = time.monotonic()
    rows, reconstructions = reconstruction(pipe, reader, factors, images, sorted(set(args.steps) | {args.edit_steps}))
    traversal_rows = traversals(pipe, reader, data, concept_map["labels"], quantiles, args.edit_steps, args.traversal_images, args.values)
    moving = [row["concept"] for row in traversal_rows if row["noise"] == "fresh" and row["image_change"] >= MOVES]
    swap_rows, reencoding, swapped = swaps(pipe, reader, data, concept_map["labels"], spread, moving or list(range(len(spread))),
                                           args.edit_steps, args.pairs)
    result = {"command": "python benchmarks/fidelity/fidelity.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "model": os.path.abspath(args.model), "scheduler_config": args.scheduler_config, "images": args.images, "pairs": args.pairs, "edit_steps": args.edit_steps,
              "traversal_images": args.traversal_images, "values": args.values, "concept_labels": concept_map["labels"],
              "concepts_that_move_the_image": moving,
              "reader_accuracy": reader.accuracy, "reconstruction": [r for r in rows if r["steps"] in args.steps],
              "swaps": swap_rows, "reencoding_error": reencoding, "traversals": traversal_rows,
              "seconds": round(time.monotonic() - started, 1)}
    print_tables(result)
    write_json(os.path.join(args.out_dir, f"fidelity_{args.name}.json"), result)
    picture(images, reconstructions, swapped, args.edit_steps, f"{args.name}: held-out images, {args.edit_steps} DDIM steps",
            os.path.join(args.out_dir, f"fidelity_{args.name}.png"))
    return result


if __name__ == "__main__":
    main()
