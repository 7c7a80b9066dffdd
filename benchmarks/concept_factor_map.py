"""Which concept carries which factor: a table and a heatmap for one trained pipeline.

For `--points` random images of a ground-truth data set, `concept_diffusion.evaluation.concept_factors`
computes the normalised mutual information of every (concept, factor) pair and, per factor, how well
all concepts together predict it. A disentangled model has one bright cell per factor row and
accuracies near 1; an entangled one smears each row.

    python benchmarks/concept_factor_map.py outputs/quickstart/pipeline --data shapes3d-procedural
"""

import argparse
import os
import sys


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


def main(argv=None) -> int:
    args = parse_args(argv)
    from concept_diffusion import ConceptDiffusionPipeline
    from concept_diffusion.data import load_ground_truth
    from concept_diffusion.atomic import write_json
    from concept_diffusion.evaluation.concept_factors import map_concepts, plot_concept_factor_map

    pipe = ConceptDiffusionPipeline.from_pretrained(args.pipeline)
    data = load_ground_truth(args.data, image_size=pipe.concept_encoder.config.sample_size)
    concept_map = map_concepts(pipe, data, args.points, args.seed)
    normalised, accuracy = concept_map["normalised_mutual_information"], concept_map["accuracy"]
    names = list(data.factor_names)
    width = max(len(name) for name in names)
    print(f"{'factor':<{width}}  accuracy  " + " ".join(f"{i:>5}" for i in range(normalised.shape[0])))
    for j, name in enumerate(names):
        print(f"{name:<{width}}  {accuracy[j]:>8.3f}  " + " ".join(f"{value:>5.2f}" for value in normalised[:, j]))
    out = args.out or os.path.join(os.path.dirname(os.path.normpath(args.pipeline)), "concept_factor_map.json")
    result = {"pipeline": args.pipeline, "data": args.data, "points": args.points, "seed": args.seed, "factors": names,
              "accuracy": dict(zip(names, accuracy.round(4).tolist())),
              "normalised_mutual_information": normalised.round(4).tolist()}
    write_json(out, result)
    png_path = os.path.splitext(out)[0] + ".png"
    plot_concept_factor_map(normalised, accuracy, names, png_path)
    print(f"wrote {out} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
