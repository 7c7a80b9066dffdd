"""What does a trained concept encoder keep of each factor: in its trunk's features, and in its concepts?

Diagnostic 4 of the object-factor study (RESULTS.md). For each trained run (or concept-encoder folder) and for
the same architecture at its random initialisation, a linear probe (standardised features, multinomial
logistic regression) per factor of shapes3d-procedural is fitted on `--train` images and tested on `--test`
held-out ones, twice: on the trunk's flattened features (what the layer that makes the concepts can see) and
on the N concepts themselves. A factor the trunk holds but the concepts do not was dropped by the concept
layer; a factor the trained trunk holds less well than the random one was trained out of it.

    python benchmarks/encoder_probe.py RUNS/base-seed0-100k RUNS/edge_loss_x10-seed0-100k

Prints a table and writes JSON.
"""

import argparse
import os
import sys

import numpy as np
import torch

from factor_probe import as_model_input


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("encoders", nargs="+", help="run folders (their pipeline/concept_encoder) or concept-encoder folders")
    parser.add_argument("--train", type=int, default=8_000, help="images the linear probes are fitted on")
    parser.add_argument("--test", type=int, default=2_000, help="held-out images they are tested on")
    parser.add_argument("--seed", type=int, default=0, help="seeds the images and the random-initialisation reference")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "encoder_probe.json"))
    return parser.parse_args(argv)


def load_encoder(folder: str):
    from concept_diffusion import ConceptEncoder

    inner = os.path.join(folder, "pipeline", "concept_encoder")
    path = inner if os.path.isdir(inner) else folder
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise SystemExit(f"{folder}: no concept encoder there (expected {inner} or a folder with config.json)")
    return ConceptEncoder.from_pretrained(path).eval()


@torch.no_grad()
def features_and_concepts(encoder, images: np.ndarray, batch: int = 500) -> tuple:
    """(trunk features (B, F), concepts (B, N)) of images (B, H, W, C) in [0, 1]."""
    trunk, concepts = [], []
    for start in range(0, len(images), batch):
        features = encoder.backbone(as_model_input(images[start : start + batch]))
        trunk.append(features)
        concepts.append(encoder.to_concepts(features))
    return torch.cat(trunk).numpy(), torch.cat(concepts).numpy()


def probe_accuracy(train: np.ndarray, train_factors: np.ndarray, test: np.ndarray, test_factors: np.ndarray) -> list:
    """Test accuracy of a linear probe per factor (column of the factor arrays)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train)
    train, test = scaler.transform(train), scaler.transform(test)
    return [round(float(LogisticRegression(max_iter=2000).fit(train, train_factors[:, k]).score(test, test_factors[:, k])), 4)
            for k in range(train_factors.shape[1])]


def main(argv=None) -> int:
    from concept_diffusion import ConceptEncoder, load_ground_truth
    from concept_diffusion.atomic import write_json

    args = parse_args(argv)
    encoders = {os.path.basename(os.path.normpath(folder)): load_encoder(folder) for folder in args.encoders}
    config = next(iter(encoders.values())).config
    if config.token_mode != "scalar":
        raise SystemExit("encoder_probe.py reads scalar-mode encoders (the concept layer after the trunk)")
    torch.manual_seed(args.seed)
    encoders = {"random initialisation": ConceptEncoder.from_config(config).eval(), **encoders}
    data = load_ground_truth("shapes3d-procedural", image_size=config.sample_size)
    rng = np.random.RandomState(args.seed)
    train_factors, train_images = data.sample(args.train, rng)
    test_factors, test_images = data.sample(args.test, rng)
    names = list(data.factor_names)
    rows = []
    for name, encoder in encoders.items():
        train, test = features_and_concepts(encoder, train_images), features_and_concepts(encoder, test_images)
        for what, index in (("trunk", 0), ("concepts", 1)):
            accuracy = probe_accuracy(train[index], train_factors, test[index], test_factors)
            rows.append({"encoder": name, "features": what, "dims": int(train[index].shape[1]), "accuracy": dict(zip(names, accuracy))})
    print("| encoder | features | dims | " + " | ".join(names) + " |")
    print("|---|---|---:|" + "---:|" * len(names))
    for row in rows:
        print(f"| {row['encoder']} | {row['features']} | {row['dims']} | " + " | ".join(f"{a:.3f}" for a in row["accuracy"].values()) + " |")
    command = " ".join(["python", "benchmarks/encoder_probe.py", *(argv if argv is not None else sys.argv[1:])])
    write_json(args.out, {"command": command, "train_images": args.train, "test_images": args.test, "rows": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
