"""How well a trained first stage reconstructs images it never saw: PSNR, and a picture.

Encodes, quantises (VQModel) or takes the posterior mean (AutoencoderKL), and decodes `--images` fresh
images of the ground-truth data (drawn with `--seed`, not the training stream's), then prints the PSNR
(mean over images, and its 5th percentile: the worst reconstructions), writes JSON, and saves a PNG of
originals above their reconstructions, each tile enlarged to be read, labelled with its PSNR. With the
run's `log.jsonl` beside the vae (stage 1's output folder), it also reports the last training batches'
PSNR and draws the training curves (`*_curves.png` beside the JSON).

    python benchmarks/first_stage_quality.py outputs/vae/vae --data shapes3d-procedural
"""

import argparse
import json
import os
import sys

import numpy as np
import torch


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("vae", help="folder of a trained first stage (train-vae's OUTPUT_DIR/vae)")
    parser.add_argument("--data", default="shapes3d-procedural", help="ground-truth data at the vae's sample size")
    parser.add_argument("--images", type=int, default=1024, help="held-out images to reconstruct")
    parser.add_argument("--seed", type=int, default=12345, help="seed of the held-out draw")
    parser.add_argument("--out", default=None, help="JSON path (default: first_stage_quality.json beside the vae); the PNG goes beside it")
    args = parser.parse_args(argv)
    if args.images < 8:
        parser.error(f"--images must be at least 8, got {args.images}")
    return args


@torch.no_grad()
def reconstruct(vae, images: np.ndarray, batch_size: int = 128) -> torch.Tensor:
    """Reconstructions (n, C, H, W) in [-1, 1] of float (n, H, W, C) images in [0, 1]: the trainer's latents
    (pre-quantisation, or the posterior mean), decoded (a VQModel quantises them first)."""
    from concept_diffusion.training.trainer import images_to_latents

    batches = torch.from_numpy(images).permute(0, 3, 1, 2).mul(2).sub(1).split(batch_size)
    return torch.cat([vae.decode(images_to_latents(vae, batch)).sample.clamp(-1, 1) for batch in batches])


def picture(images: np.ndarray, reconstructions: np.ndarray, values: np.ndarray, png_path: str, count: int = 8) -> None:
    """Originals above reconstructions, each tile at least 128 pixels wide, columns labelled with the PSNR."""
    from concept_diffusion.atomic import atomic_path
    from concept_diffusion.training.visualize import labelled_grid
    from PIL import Image

    tiles = [Image.fromarray((np.clip(tile, 0, 1) * 255).round().astype(np.uint8)) for tile in [*images[:count], *reconstructions[:count]]]
    grid = labelled_grid(tiles, rows=2, cols=count, row_labels=["original", "reconstruction"],
                         col_labels=[f"{value:.1f} dB" for value in values[:count]], scale=max(2, 128 // images.shape[1]),
                         title="held-out images and their first-stage reconstructions (PSNR per image)")
    with atomic_path(png_path, ".png") as temporary:
        grid.save(temporary, format="PNG")


def main(argv=None) -> int:
    args = parse_args(argv)
    from concept_diffusion.atomic import write_json
    from concept_diffusion.data import load_ground_truth
    from concept_diffusion.training.discriminator import psnr
    from concept_diffusion.training.trainer import read_first_stage

    vae = read_first_stage(args.vae)
    data = load_ground_truth(args.data, image_size=vae.config.sample_size)
    _, images = data.sample(args.images, np.random.RandomState(args.seed))
    reconstructions = reconstruct(vae, images)
    targets = torch.from_numpy(images).permute(0, 3, 1, 2) * 2 - 1
    values = psnr(reconstructions, targets, reduce=False).numpy()  # the training log's PSNR, per image
    result = {"vae": args.vae, "data": args.data, "images": args.images, "seed": args.seed,
              "psnr_mean_db": round(float(values.mean()), 2), "psnr_p5_db": round(float(np.percentile(values, 5)), 2),
              "mse": float(((reconstructions - targets) / 2).pow(2).mean())}  # in [0, 1] units
    out = args.out or os.path.join(os.path.dirname(os.path.normpath(args.vae)), "first_stage_quality.json")
    log_path = os.path.join(os.path.dirname(os.path.normpath(args.vae)), "log.jsonl")
    if os.path.isfile(log_path):
        with open(log_path) as file:
            records = [json.loads(line) for line in file if line.strip()]
        trained = [r for r in records if "psnr" in r]
        if trained:
            result.update(training_steps=trained[-1]["step"], training_images=trained[-1].get("images_seen"),
                          training_batch_psnr_last_db=round(float(np.mean([r["psnr"] for r in trained[-10:]])), 2))
            from concept_diffusion.training.visualize import plot_curves

            plot_curves(log_path, os.path.splitext(out)[0] + "_curves.png")
    print(f"{args.vae}: PSNR {result['psnr_mean_db']:.2f} dB (mean over {args.images} held-out images), "
          f"{result['psnr_p5_db']:.2f} dB at the 5th percentile, MSE {result['mse']:.5f}")
    write_json(out, result)
    picture(images, (reconstructions.permute(0, 2, 3, 1).numpy() + 1) / 2, values, os.path.splitext(out)[0] + ".png")
    print(f"wrote {out} and {os.path.splitext(out)[0]}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
