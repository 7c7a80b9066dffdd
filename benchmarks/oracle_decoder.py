"""Can the UNet draw each factor when its tokens carry it perfectly? The decoder's side of the object-factor question.

The `cpu` preset's UNet is trained with the preset's own diffusion loss, timestep sampling, learning rate and
EMA (`pipelines/cpu/training.json`), but conditioned on oracle concepts: each ground-truth factor of
shapes3d-procedural, scaled to [-1, 1], is one concept, and a concept encoder's token MLPs (trained along)
turn it into its token. Along the way, images are drawn from the oracle concepts of held-out factor tuples
(DDIM, fresh noise each) and the supervised probe of `factor_probe.py`, trained on real images first,
reads every factor back from them. Its accuracy is how well the decoder renders each factor from a token.

If the decoder renders the object's scale, shape and orientation from oracle tokens within the budget where
EncDiff's concepts do not carry them, the missing piece is the encoder's incentive to put them in its
concepts, not the UNet's ability to use them.

    python benchmarks/oracle_decoder.py --images 100000
"""

import argparse
import os
import sys
import time

import numpy as np
import torch

from factor_probe import BATCH as PROBE_BATCH
from factor_probe import DEVICE, as_model_input, test_accuracy, train_probe

BATCH = 32


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--images", type=int, default=100_000, help="training images of the oracle-conditioned UNet")
    parser.add_argument("--evaluations", type=int, default=4, help="rendering checks along training (the curve)")
    parser.add_argument("--test", type=int, default=500, help="held-out factor tuples drawn at each check")
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps of each drawing")
    parser.add_argument("--probe-images", type=int, default=100_000, help="training images of the probe that reads the drawings")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop training after this long (a last check is drawn then)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "oracle_decoder.json"))
    args = parser.parse_args(argv)
    if args.images < BATCH or args.test < 1:
        parser.error(f"--images must be at least one batch ({BATCH}) and --test at least 1")
    return args


def oracle_concepts(factors: np.ndarray, factor_sizes: list) -> torch.Tensor:
    """Factor indices (B, K) -> concepts (B, K): each factor's value scaled to [-1, 1]."""
    sizes = np.asarray(factor_sizes, dtype=np.float32)
    return torch.from_numpy(2 * factors.astype(np.float32) / (sizes - 1) - 1)


def oracle_pipeline(data, seed: int):
    """The `cpu` preset's UNet and scheduler with a concept encoder of one concept per factor (only its token MLPs are used)."""
    from concept_diffusion import ConceptEncoder, build_pipeline
    from concept_diffusion.pipelines import ConceptDiffusionPipeline

    preset = build_pipeline("cpu", seed=seed)
    config = preset.concept_encoder.config
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        encoder = ConceptEncoder(sample_size=config.sample_size, num_concepts=data.num_factors, token_dim=config.token_dim, width=config.width)
    return ConceptDiffusionPipeline(concept_encoder=encoder, unet=preset.unet, scheduler=preset.scheduler).to(DEVICE)


@torch.no_grad()
def rendered_accuracy(pipe, probe, data, factors: np.ndarray, steps: int, seed: int) -> np.ndarray:
    """Draw images from the oracle concepts of `factors`; the probe's accuracy per factor on them."""
    pipe.concept_encoder.eval(), pipe.unet.eval()
    images = pipe(concepts=oracle_concepts(factors, data.factor_sizes), num_inference_steps=steps, output_type="np",
                  generator=torch.Generator().manual_seed(seed)).images
    pipe.concept_encoder.train(), pipe.unet.train()
    return test_accuracy(probe, as_model_input(images.astype(np.float32)), factors)


def train_oracle(pipe, probe, data, args) -> list:
    """Train UNet and token MLPs on oracle concepts with the `cpu` preset's recipe; returns the rendering curve."""
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel
    from tqdm.auto import tqdm

    from concept_diffusion.training import TrainingConfig, build_config
    from concept_diffusion.training.data import step_generator
    from concept_diffusion.training.trainer import diffusion_loss

    config = build_config(TrainingConfig, {"preset": "cpu", "seed": args.seed})
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    params = list(pipe.unet.parameters()) + list(pipe.concept_encoder.token_mlps.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, fused=True)
    lr_scheduler = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=config.lr_warmup_steps)
    ema = EMAModel(pipe.unet.parameters(), decay=config.ema_decay, use_ema_warmup=config.ema_warmup, foreach=True)
    test_factors = data.sample_factors(args.test, np.random.RandomState(args.seed + 3))
    rng, steps = np.random.RandomState(args.seed + 4), args.images // BATCH
    checkpoints = set(np.linspace(steps / args.evaluations, steps, args.evaluations).round().astype(int))
    pipe.unet.train(), pipe.concept_encoder.train()
    curve, started = [], time.monotonic()
    for step in tqdm(range(1, steps + 1), desc="UNet on oracle concepts", unit="step"):
        factors, images = data.sample(BATCH, rng)
        tokens = pipe.concept_encoder.concepts_to_tokens(oracle_concepts(factors, data.factor_sizes))
        loss = diffusion_loss(pipe.unet, noise_scheduler, as_model_input(images).to(DEVICE), tokens,
                              step_generator(args.seed, step, device=DEVICE), config)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step(), lr_scheduler.step(), optimizer.zero_grad(set_to_none=True)
        ema.step(pipe.unet.parameters())
        out_of_time = args.max_minutes is not None and time.monotonic() - started > 60 * args.max_minutes
        if step in checkpoints or out_of_time:
            ema.store(pipe.unet.parameters())
            ema.copy_to(pipe.unet.parameters())
            accuracy = rendered_accuracy(pipe, probe, data, test_factors, args.steps, args.seed)
            ema.restore(pipe.unet.parameters())
            curve.append({"images": step * BATCH, "seconds": round(time.monotonic() - started, 1), "accuracy": accuracy.round(4).tolist()})
        if out_of_time:
            break
    ema.copy_to(pipe.unet.parameters())  # the drawings below are the EMA model's, like every check
    return curve


def draw_oracle_traversal(pipe, data, path: str, values: int = 8, steps: int = 20, seed: int = 0) -> None:
    """One row per factor: a fixed scene with that oracle concept swept over its range, from one noise."""
    from concept_diffusion.atomic import atomic_path
    from concept_diffusion.training.visualize import labelled_grid

    base = data.sample_factors(1, np.random.RandomState(seed + 5))
    concepts = oracle_concepts(base, data.factor_sizes).repeat(data.num_factors * values, 1)
    sweep = torch.linspace(-1, 1, values)
    for k in range(data.num_factors):
        concepts[k * values : (k + 1) * values, k] = sweep
    pipe.concept_encoder.eval(), pipe.unet.eval()
    with torch.no_grad():
        noise = torch.randn(1, *pipe.latent_shape, generator=torch.Generator().manual_seed(seed)).repeat(len(concepts), 1, 1, 1)
        tiles = pipe(concepts=concepts, latents=noise, num_inference_steps=steps, output_type="pil").images
    grid = labelled_grid(tiles, rows=data.num_factors, cols=values, row_labels=list(data.factor_names),
                         col_labels=["lowest"] + [""] * (values - 2) + ["highest"],
                         title="UNet trained on oracle concepts: one factor's concept swept, the others fixed, one noise")
    with atomic_path(path, ".png") as temporary:
        grid.save(temporary)


def main(argv=None) -> int:
    from concept_diffusion import load_ground_truth
    from concept_diffusion.atomic import write_json

    args = parse_args(argv)
    torch.manual_seed(args.seed)
    data = load_ground_truth("shapes3d-procedural", image_size=32)
    data.warm_up()
    probe_args = argparse.Namespace(images=args.probe_images, test=2000, evaluations=1, learning_rate=1e-3, seed=args.seed)
    probe_result = train_probe(data, probe_args, keep_model=True)
    probe = probe_result.pop("model").eval()
    pipe = oracle_pipeline(data, args.seed)
    pipe.set_progress_bar_config(disable=True)
    curve = train_oracle(pipe, probe, data, args)
    names = list(data.factor_names)
    print(f"\nProbe on real images ({probe_result['images']:,} training images of batch {PROBE_BATCH}): "
          + ", ".join(f"{n} {a:.3f}" for n, a in probe_result["accuracy"].items()))
    print(f"Probe on images the UNet draws from oracle concepts ({args.test} held-out tuples, {args.steps} DDIM steps):")
    print("| UNet training images | " + " | ".join(names) + " |")
    print("|---:|" + "---:|" * len(names))
    for point in curve:
        print(f"| {point['images']:,} | " + " | ".join(f"{a:.3f}" for a in point["accuracy"]) + " |")
    png_path = os.path.splitext(args.out)[0] + ".png"
    draw_oracle_traversal(pipe, data, png_path, steps=args.steps, seed=args.seed)
    command = " ".join(["python", "benchmarks/oracle_decoder.py", *(argv if argv is not None else sys.argv[1:])])
    write_json(args.out, {"command": command, "factor_names": names, "probe_on_real_images": probe_result, "rendered": curve})
    print(f"wrote {args.out} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
