"""Can the object's factors be read at all, and how much does each factor weigh in the diffusion loss?

Two diagnostics on shapes3d-procedural, at each image size in `--sizes`:

1. **Supervised probe.** The concept encoder's trunk (the `cpu` preset's: the released Encoder4 layout,
   width 64) with one linear classification head per factor instead of the concept layer, trained with
   cross-entropy on the factor labels for `--images` images (Adam, batch 64), then tested on `--test`
   held-out images. Its per-factor test accuracy is an upper bound for what unsupervised concepts of the
   same encoder can carry at that size: a factor the probe cannot read, no recipe will.
2. **Pixel share.** How much of an image's pixels each factor moves: the mean squared difference between
   two images that differ in that factor alone, as a fraction of the same between two random images. The
   diffusion loss (L2 in pixel space) pays each factor roughly in proportion to it. `--first-stage` adds
   the share in a trained first stage's latents, `--edge-loss-weights` the share under the training
   option `edge_loss_weight`, and `--gradient-loss-weights` under each edge weight plus the training
   option `gradient_loss_weight` (a loss on the error's intensity gradient).

    python benchmarks/factor_probe.py --sizes 32,64 --images 100000
    python benchmarks/factor_probe.py --sizes 32,64 --images 0 --first-stage VAE --edge-loss-weights 10   # shares only
    python benchmarks/factor_probe.py --sizes 32 --images 0 --edge-loss-weights 10 --gradient-loss-weights 100,300,10000
    python benchmarks/factor_probe.py --sizes 32 --images 2000 --test 500    # a quick look

Prints a table per diagnostic, writes JSON, and draws the probe's test accuracy against images seen (PNG
beside the JSON).
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

BATCH = 64
PROBE_WIDTH = 64  # the `cpu` preset's encoder width
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--sizes", default="32,64", help="comma-separated image sizes (multiples of 16) of the probe and the "
                        "pixel share; empty for --first-stage alone")
    parser.add_argument("--images", type=int, default=100_000, help="training images of the probe at each size (0: no probe, shares only)")
    parser.add_argument("--test", type=int, default=5_000, help="held-out test images")
    parser.add_argument("--evaluations", type=int, default=5, help="test evaluations along training (the curve)")
    parser.add_argument("--pairs", type=int, default=4_000, help="image pairs per factor for the pixel share")
    parser.add_argument("--first-stage", default=None, help="a trained first stage's folder: also the share of each factor in its latents")
    parser.add_argument("--edge-loss-weights", default="", help="comma-separated `edge_loss_weight`s: also each factor's "
                        "share of the loss weighted toward edges (the training option) at each size")
    parser.add_argument("--gradient-loss-weights", default="", help="comma-separated `gradient_loss_weight`s: also the share "
                        "of each edge-weighted loss plus the intensity-gradient term with that weight")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "factor_probe.json"))
    args = parser.parse_args(argv)
    args.sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    args.edge_loss_weights = [float(weight) for weight in args.edge_loss_weights.split(",") if weight.strip()]
    args.gradient_loss_weights = [float(weight) for weight in args.gradient_loss_weights.split(",") if weight.strip()]
    if not args.sizes and not args.first_stage:
        parser.error("nothing to measure: give --sizes, --first-stage or both")
    bad = [size for size in args.sizes if size < 16 or size % 16]
    if bad:
        parser.error(f"--sizes: {bad} are not multiples of 16 of at least 16 (the trunk halves the size four times)")
    if 0 < args.images < BATCH or args.images < 0 or args.test < 1:
        parser.error(f"--images must be 0 (no probe) or at least one batch ({BATCH}), and --test at least 1")
    return args


class FactorProbe(nn.Module):
    """The concept encoder's trunk with one linear head per factor (logits for each of its values)."""

    def __init__(self, image_size: int, factor_sizes: list, width: int = PROBE_WIDTH):
        super().__init__()
        from concept_diffusion.models.concept_encoder import released_backbone

        self.trunk = released_backbone(3, width)
        self.heads = nn.Linear(width * (image_size // 16) ** 2, sum(factor_sizes))
        self.factor_sizes = list(factor_sizes)

    def forward(self, images: torch.Tensor) -> list:
        return list(torch.split(self.heads(self.trunk(images)), self.factor_sizes, dim=1))


def as_model_input(images: np.ndarray) -> torch.Tensor:
    """numpy (B, H, W, C) in [0, 1] -> (B, C, H, W) in [-1, 1], as the trainer feeds the encoder."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous() * 2 - 1


@torch.no_grad()
def test_accuracy(probe: FactorProbe, images: torch.Tensor, factors: np.ndarray) -> np.ndarray:
    probe.eval()
    device = next(probe.parameters()).device
    chunks = (probe(images[i : i + 500].to(device)) for i in range(0, len(images), 500))
    logits = [torch.cat(parts).cpu() for parts in zip(*chunks)]
    probe.train()
    return np.array([(head.argmax(dim=1).numpy() == factors[:, k]).mean() for k, head in enumerate(logits)])


def train_probe(data, args, keep_model: bool = False) -> dict:
    """Train the probe on `args.images` images of `data`; test accuracy per factor at `args.evaluations` points
    (and, with `keep_model`, the trained probe under "model")."""
    from tqdm.auto import tqdm

    torch.manual_seed(args.seed)
    probe = FactorProbe(data.image_size, data.factor_sizes).to(DEVICE)
    optimizer = torch.optim.Adam(probe.parameters(), lr=args.learning_rate)
    test_factors, test_images = data.sample(args.test, np.random.RandomState(args.seed + 1))
    test_images = as_model_input(test_images)
    train_rng = np.random.RandomState(args.seed + 2)
    steps = args.images // BATCH
    checkpoints = set(np.linspace(steps / args.evaluations, steps, args.evaluations).round().astype(int))
    curve, started = [], time.monotonic()
    for step in tqdm(range(1, steps + 1), desc=f"probe at {data.image_size}x{data.image_size}", unit="step"):
        factors, images = data.sample(BATCH, train_rng)
        targets = torch.from_numpy(factors).to(DEVICE)
        loss = sum(F.cross_entropy(logits, targets[:, k]) for k, logits in enumerate(probe(as_model_input(images).to(DEVICE))))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step in checkpoints:
            curve.append({"images": step * BATCH, "accuracy": test_accuracy(probe, test_images, test_factors).round(4).tolist()})
    result = {"size": data.image_size, "images": steps * BATCH, "seconds": round(time.monotonic() - started, 1), "curve": curve,
              "accuracy": dict(zip(data.factor_names, curve[-1]["accuracy"]))}
    return {**result, "model": probe} if keep_model else result


def pixel_share(data, pairs: int, seed: int, space=None, edge_loss_weights=(0.0,), gradient_loss_weights=(0.0,)) -> dict:
    """Per factor: mean squared difference of image pairs differing in that factor alone, over random pairs'.

    `space` maps images (n, H, W, C) in [0, 1] to what is compared (default: the pixels), e.g. a first stage's latents.
    Returns {(edge_loss_weight, gradient_loss_weight): {factor: share}}: the difference scored as the training loss
    scores an error with those options (`edge_weights` of the first image of the pair, the target, plus the weighted
    `intensity_gradient_error`; (0, 0) is the plain loss). The images are rendered once for all weights.
    """
    from concept_diffusion.training.trainer import edge_weights, intensity_gradient_error

    space = space or (lambda images: images)
    rng = np.random.RandomState(seed)
    first = data.sample_factors(pairs, rng)
    images = space(data.sample_observations_from_factors(first, rng))
    targets = torch.from_numpy(images).permute(0, 3, 1, 2)
    weights = {w: edge_weights(targets, w).permute(0, 2, 3, 1).numpy() for w in edge_loss_weights}

    def losses(other: np.ndarray) -> dict:
        squared = (images - other) ** 2
        gradient = float(intensity_gradient_error(targets - torch.from_numpy(other).permute(0, 3, 1, 2)).mean())
        return {(w, g): float(np.mean(weight * squared)) + g * gradient for w, weight in weights.items() for g in gradient_loss_weights}

    total = losses(space(data.sample_observations_from_factors(data.sample_factors(pairs, rng), rng)))
    shares = {setting: {} for setting in total}
    for k, (name, size) in enumerate(zip(data.factor_names, data.factor_sizes)):
        second = first.copy()
        second[:, k] = (first[:, k] + rng.randint(1, size, size=pairs)) % size  # another value of factor k only
        for setting, loss in losses(space(data.sample_observations_from_factors(second, rng))).items():
            shares[setting][name] = loss / total[setting]
    return shares


def share_rows(compared: str, shares: dict) -> dict:
    """{table row: shares}: the plain loss as `compared`, each edge and gradient weight after it."""
    return {compared + (f", edge_loss_weight {w:g}" if w else "") + (f", gradient_loss_weight {g:g}" if g else ""): share
            for (w, g), share in shares.items()}


def latent_space(vae_folder: str):
    """images (n, H, W, C) in [0, 1] -> a trained first stage's latents (n, h, w, C), as stage 2 diffuses them."""
    from concept_diffusion.training.trainer import images_to_latents, read_first_stage

    vae = read_first_stage(vae_folder)

    @torch.no_grad()
    def encode(images: np.ndarray) -> np.ndarray:
        latents = [images_to_latents(vae, as_model_input(images[i : i + 256])) for i in range(0, len(images), 256)]
        return torch.cat(latents).permute(0, 2, 3, 1).numpy()  # (n, h, w, C), the pixels' layout

    return encode, vae.config.sample_size


def plot_curves(results: list, factor_names: list, png_path: str) -> None:
    """Test accuracy against images seen, one panel per factor, one line per image size."""
    from matplotlib.figure import Figure

    from concept_diffusion.atomic import atomic_path

    figure = Figure(figsize=(15, 4.2))
    axes = figure.subplots(1, len(factor_names), sharey=True)
    for k, (axis, name) in enumerate(zip(axes, factor_names)):
        for result in results:
            images = [point["images"] / 1000 for point in result["curve"]]
            axis.plot(images, [point["accuracy"][k] for point in result["curve"]], "o-", label=f"{result['size']}x{result['size']}")
        axis.set_title(name, fontsize=11)
        axis.set_xlabel("training images (thousands)")
        axis.set_ylim(0, 1.02)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy")
    axes[0].legend(title="image size")
    figure.suptitle("Supervised probe of the concept encoder's trunk on shapes3d-procedural: can each factor be read?", fontsize=12)
    figure.tight_layout()
    with atomic_path(png_path, ".png") as temporary:
        figure.savefig(temporary, dpi=100)


def print_tables(probes: list, shares: dict, names: list, sizes: list) -> None:
    if probes:
        print("\nSupervised probe: test accuracy per factor (chance: " + ", ".join(f"{n} {1 / s:.3f}" for n, s in zip(names, sizes)) + ")")
        print("| size | images | seconds | " + " | ".join(names) + " |")
        print("|---|---:|---:|" + "---:|" * len(names))
        for result in probes:
            print(f"| {result['size']}x{result['size']} | {result['images']:,} | {result['seconds']:.0f} | "
                  + " | ".join(f"{result['accuracy'][n]:.3f}" for n in names) + " |")
    print("\nShare of each factor: squared difference of pairs differing in that factor alone, over random pairs'")
    print("| compared | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for space, share in shares.items():
        print(f"| {space} | " + " | ".join(f"{share[n]:.3f}" for n in names) + " |")


def main(argv=None) -> int:
    from concept_diffusion import load_ground_truth
    from concept_diffusion.atomic import write_json

    args = parse_args(argv)
    probes, shares = [], {}
    weights = [0.0, *args.edge_loss_weights], [0.0, *args.gradient_loss_weights]
    for size in args.sizes:
        data = load_ground_truth("shapes3d-procedural", image_size=size)
        data.warm_up()
        shares.update(share_rows(f"{size}x{size} pixels", pixel_share(data, args.pairs, args.seed, None, *weights)))
        if args.images:
            probes.append(train_probe(data, args))
    if args.first_stage:
        encode, size = latent_space(args.first_stage)
        data = load_ground_truth("shapes3d-procedural", image_size=size)
        shares.update(share_rows(f"{size}x{size} images, first-stage latents", pixel_share(data, args.pairs, args.seed, encode, *weights)))
    names = list(data.factor_names)
    print_tables(probes, shares, names, data.factor_sizes)
    png_path = os.path.splitext(args.out)[0] + ".png"
    if probes:
        plot_curves(probes, names, png_path)
    command = " ".join(["python", "benchmarks/factor_probe.py", *(argv if argv is not None else sys.argv[1:])])
    write_json(args.out, {"command": command, "batch_size": BATCH, "width": PROBE_WIDTH, "factor_names": names,
                          "factor_sizes": list(data.factor_sizes), "probe": probes, "share": shares,
                          **({"first_stage": os.path.abspath(args.first_stage)} if args.first_stage else {})})
    print(f"wrote {args.out}" + (f" and {png_path}" if probes else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
