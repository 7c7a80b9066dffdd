"""Why each hue takes two concepts: a hue is a ring, and one scalar cannot hold a ring without folding it.

shapes3d's hues are 0.0, 0.1, ..., 0.9 around the colour wheel, so hue 0.9 lies next to hue 0.0. A continuous
map from a ring to one number must fold it somewhere, and hues on the two sides of the fold share values:
one concept reads a hue at about half the accuracy of two. For each hue factor of a trained pipeline this
reads the factor from its best concept, its second best and both together (a gradient-boosted classifier on
held-out images, as the concept-factor map does), prints a table, writes JSON, and draws each hue's images
in the plane of its two concepts with the hues' centres joined in hue order: a loop where both are needed.

    python benchmarks/hue_ring.py examples/models/encdiff-shapes3d-procedural
"""

import argparse
import colorsys
import os
import sys

import numpy as np

HUE_FACTORS = ["floor_hue", "wall_hue", "object_hue"]


def read_accuracy(codes: np.ndarray, labels: np.ndarray, seed: int) -> float:
    """Held-out accuracy of a gradient-boosted classifier (the concept-factor map's reader) on the last third."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    split = 2 * len(codes) // 3
    classifier = HistGradientBoostingClassifier(max_iter=100, random_state=seed).fit(codes[:split], labels[:split])
    return float(classifier.score(codes[split:], labels[split:]))


def hue_rings(codes: np.ndarray, factors: np.ndarray, factor_names: list, seed: int = 0) -> list:
    """Per hue factor: its two most informative concepts and the accuracy of each alone and of both."""
    from concept_diffusion.evaluation.concept_factors import concept_factor_map

    normalised, _ = concept_factor_map(codes, factors, seed)
    rows = []
    for name in HUE_FACTORS:
        j = factor_names.index(name)
        first, second = (int(i) for i in np.argsort(-normalised[:, j])[:2])
        rows.append({"factor": name, "concepts": [first, second],
                     "accuracy_first": read_accuracy(codes[:, [first]], factors[:, j], seed),
                     "accuracy_second": read_accuracy(codes[:, [second]], factors[:, j], seed),
                     "accuracy_both": read_accuracy(codes[:, [first, second]], factors[:, j], seed)})
    return rows


def draw(codes: np.ndarray, factors: np.ndarray, factor_names: list, rows: list, hues: np.ndarray, png_path: str) -> None:
    from matplotlib.figure import Figure

    from concept_diffusion.atomic import atomic_path

    figure = Figure(figsize=(5 * len(rows), 5))
    for axis, row in zip(figure.subplots(1, len(rows)), rows):
        j, (first, second) = factor_names.index(row["factor"]), row["concepts"]
        colours = np.array([colorsys.hsv_to_rgb(hue, 0.85, 0.95) for hue in hues])
        axis.scatter(codes[:, first], codes[:, second], c=colours[factors[:, j]], s=6, alpha=0.35)
        centres = np.array([codes[factors[:, j] == value][:, [first, second]].mean(0) for value in range(len(hues))])
        loop = np.vstack([centres, centres[:1]])
        axis.plot(loop[:, 0], loop[:, 1], "-", color="black", linewidth=1.2)
        for value, (x, y) in enumerate(centres):
            axis.scatter([x], [y], color=colours[value], edgecolor="black", s=90, zorder=3)
            axis.annotate(f"{hues[value]:.1f}", (x, y), textcoords="offset points", xytext=(6, 6), fontsize=10)
        axis.set_xlabel(f"concept {first} (alone: {row['accuracy_first']:.2f})")
        axis.set_ylabel(f"concept {second} (alone: {row['accuracy_second']:.2f})")
        axis.set_title(f"{row['factor']}: both concepts read it at {row['accuracy_both']:.2f}", fontsize=11)
    figure.suptitle("each hue's images in the plane of its two concepts; hue centres joined in hue order", fontsize=12)
    figure.tight_layout()
    with atomic_path(png_path, ".png") as temporary:
        figure.savefig(temporary, dpi=100)


def main(argv=None) -> None:
    import torch

    from concept_diffusion import ConceptDiffusionPipeline, load_ground_truth
    from concept_diffusion.atomic import write_json
    from concept_diffusion.data.shapes3d_procedural import HUES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("pipeline", help="a saved pipeline trained on shapes3d-procedural")
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "hue_ring.json"))
    args = parser.parse_args(argv)

    pipe = ConceptDiffusionPipeline.from_pretrained(args.pipeline)
    data = load_ground_truth("shapes3d-procedural", image_size=pipe.concept_encoder.config.sample_size)
    factors, images = data.sample(args.images, np.random.RandomState(args.seed))
    with torch.no_grad():
        codes = torch.cat([pipe.encode(images[i : i + 256]) for i in range(0, len(images), 256)]).numpy()
    rows = hue_rings(codes, factors, list(data.factor_names), args.seed)
    print("| factor | concepts | first alone | second alone | both |\n|---|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['factor']} | {row['concepts']} | {row['accuracy_first']:.3f} | {row['accuracy_second']:.3f} | {row['accuracy_both']:.3f} |")
    png_path = os.path.splitext(args.out)[0] + ".png"
    draw(codes, factors, list(data.factor_names), rows, HUES, png_path)
    write_json(args.out, {"command": "python benchmarks/hue_ring.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                          "pipeline": args.pipeline, "images": args.images, "rows": rows})
    print(f"wrote {args.out} and {png_path}")


if __name__ == "__main__":
    main()
