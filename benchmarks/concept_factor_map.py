"""Which concept carries which factor: a table and a heatmap for one trained pipeline.

For `--points` random images of a ground-truth data set: the normalised mutual information of
every (concept, factor) pair (each concept binned in 20 equal-width bins and the MI divided by the
factor's entropy, as MIG does) and, per factor, how well all concepts together predict it (test
accuracy of a gradient-boosted classifier, DCI's informativeness per factor). A disentangled model
has one bright cell per factor row and accuracies near 1; an entangled one smears each row.

    python benchmarks/concept_factor_map.py outputs/quickstart/pipeline --data shapes3d-procedural
"""

import argparse
import json
import os
import sys

import numpy as np


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("pipeline", help="folder of a saved ConceptDiffusionPipeline (or a Hub repo id)")
    parser.add_argument("--data", default="shapes3d-procedural", help="ground-truth data with factors")
    parser.add_argument("--points", type=int, default=3000, help="images to encode (2/3 fit the classifiers, 1/3 test them)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="JSON path (default: concept_factor_map.json beside the pipeline); the PNG goes beside it")
    args = parser.parse_args(argv)
    if args.points < 30:
        parser.error(f"--points must be at least 30, got {args.points}")
    return args


def concept_factor_map(codes: np.ndarray, factors: np.ndarray, seed: int = 0) -> tuple:
    """(normalised MI (concepts, factors), per-factor test accuracy (factors,)) for codes (n, d) and factors (n, k)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from concept_diffusion.evaluation.mutual_information import discrete_entropy, discrete_mutual_info, histogram_discretize

    mutual_information = discrete_mutual_info(histogram_discretize(codes), factors)
    normalised = mutual_information / np.maximum(discrete_entropy(factors), 1e-12)[None, :]
    split = 2 * len(codes) // 3
    accuracy = np.array([
        HistGradientBoostingClassifier(max_iter=100, random_state=seed).fit(codes[:split], factors[:split, j])
        .score(codes[split:], factors[split:, j])
        for j in range(factors.shape[1])
    ])
    return normalised, accuracy


def plot(normalised: np.ndarray, accuracy: np.ndarray, factor_names: list, png_path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    num_concepts, num_factors = normalised.shape
    figure, axis = plt.subplots(figsize=(1.0 + 0.55 * num_concepts, 0.9 + 0.5 * num_factors))
    image = axis.imshow(normalised.T, vmin=0, vmax=max(float(normalised.max()), 1e-6), cmap="viridis", aspect="auto")
    axis.set_xticks(range(num_concepts), [str(i) for i in range(num_concepts)])
    axis.set_yticks(range(num_factors), [f"{name} ({acc:.2f})" for name, acc in zip(factor_names, accuracy)])
    axis.set_xlabel("concept")
    axis.set_title("normalised mutual information (factor: accuracy from all concepts)", fontsize=9)
    figure.colorbar(image, ax=axis)
    figure.tight_layout()
    temporary = png_path + ".tmp.png"
    figure.savefig(temporary, dpi=100)
    plt.close(figure)
    os.replace(temporary, png_path)


def main(argv=None) -> int:
    args = parse_args(argv)
    from concept_diffusion import ConceptDiffusionPipeline
    from concept_diffusion.data import load_ground_truth
    from concept_diffusion.evaluation.evaluate import representation_function

    pipe = ConceptDiffusionPipeline.from_pretrained(args.pipeline)
    data = load_ground_truth(args.data, image_size=pipe.concept_encoder.config.sample_size)
    random_state = np.random.RandomState(args.seed)
    factors, images = data.sample(args.points, random_state)
    encode, _ = representation_function(pipe, batch_size=256)
    codes = encode(images)
    normalised, accuracy = concept_factor_map(codes, factors, args.seed)

    names = list(data.factor_names)
    width = max(len(name) for name in names)
    print(f"{'factor':<{width}}  accuracy  " + " ".join(f"{i:>5}" for i in range(codes.shape[1])))
    for j, name in enumerate(names):
        print(f"{name:<{width}}  {accuracy[j]:>8.3f}  " + " ".join(f"{value:>5.2f}" for value in normalised[:, j]))
    out = args.out or os.path.join(os.path.dirname(os.path.normpath(args.pipeline)), "concept_factor_map.json")
    result = {"pipeline": args.pipeline, "data": args.data, "points": args.points, "seed": args.seed, "factors": names,
              "accuracy": dict(zip(names, accuracy.round(4).tolist())),
              "normalised_mutual_information": normalised.round(4).tolist()}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".tmp", "w") as file:
        json.dump(result, file, indent=2)
    os.replace(out + ".tmp", out)
    png_path = os.path.splitext(out)[0] + ".png"
    plot(normalised, accuracy, names, png_path)
    print(f"wrote {out} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
