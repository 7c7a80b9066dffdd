"""Where a training step of stage 2 spends its time, and how fast the whole loop runs.

Uses the trainer's own pieces (data loader, first stage, `diffusion_loss`, AdamW, diffusers' EMA)
on a preset with untrained weights (speed does not depend on what the weights are). Two tables:

1. Phases, each bracketed by a device synchronisation: next batch from the loader, first-stage
   encoding, forward (encoder + UNet + loss), backward, optimizer (clip + AdamW), EMA update.
2. The loop as the trainer runs it, with no synchronisation inside, in variants side by side:
   `before` (the trainer until 2026-11-27: per-parameter AdamW and EMA, noise and timesteps drawn
   on the CPU and copied over, a host sync per step for the NaN check and the progress bar),
   `after` (fused AdamW, foreach EMA, noise drawn on the device, no per-step sync), and on a GPU
   `after` with TF32 and with bf16 autocast. Both read the same loader (pinned memory on a GPU).

    python benchmarks/train_step_speed.py --preset cpu --steps 10 --rounds 7
    python benchmarks/train_step_speed.py --preset shapes3d --device cuda --num-workers 8 --steps 100
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch

from concept_diffusion.presets import build_pipeline
from concept_diffusion.training import TrainingConfig, build_config
from concept_diffusion.training.data import batch_loader, load_training_data, step_generator
from concept_diffusion.training.trainer import diffusion_loss, images_to_latents


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--preset", default="cpu", help="preset name or folder (default: cpu)")
    parser.add_argument("--data", default="shapes3d-procedural")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the preset's training batch size")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers rendering batches")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per phase table and per round of each variant")
    parser.add_argument("--rounds", type=int, default=5, help="rounds in which the variants take turns (median reported)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "train_step_speed.json"))
    return parser.parse_args(argv)


class Setup:
    """A fresh model, optimizer and EMA for one variant; the data loader is shared."""

    def __init__(self, args, config, device, fast: bool):
        from diffusers import DDPMScheduler
        from diffusers.training_utils import EMAModel

        pipe = build_pipeline(args.preset, seed=0)
        self.encoder, self.unet = pipe.concept_encoder.to(device).train(), pipe.unet.to(device).train()
        self.vae = pipe.vae.to(device).eval().requires_grad_(False) if pipe.vae is not None else None
        self.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        self.params = list(self.encoder.parameters()) + list(self.unet.parameters())
        self.optimizer = torch.optim.AdamW(self.params, lr=1e-4, fused=fast, foreach=None if fast else False)
        self.ema = EMAModel(self.unet.parameters(), decay=0.999, use_ema_warmup=True, foreach=fast)
        self.config, self.device, self.fast = config, device, fast


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def phases(setup: Setup, loader, steps: int) -> dict:
    """Median seconds of each phase over `steps` steps, each phase bracketed by a sync."""
    times = {name: [] for name in ("data", "first_stage", "forward", "backward", "optimizer", "ema")}
    device = setup.device
    for number in range(steps + 3):
        marks = [time.perf_counter()]

        def mark():
            sync(device)
            marks.append(time.perf_counter())

        images = next(loader)["images"].to(device, non_blocking=True)
        mark()
        with torch.no_grad():
            latents = images if setup.vae is None else images_to_latents(setup.vae, images) * 0.2
        mark()
        tokens = setup.encoder(images).tokens
        loss = diffusion_loss(setup.unet, setup.scheduler, latents, tokens, step_generator(0, number, 0, device), setup.config)
        mark()
        loss.backward()
        mark()
        torch.nn.utils.clip_grad_norm_(setup.params, 1.0)
        setup.optimizer.step()
        setup.optimizer.zero_grad(set_to_none=True)
        mark()
        setup.ema.step(setup.unet.parameters())
        mark()
        if number >= 3:
            for name, start, end in zip(times, marks, marks[1:]):
                times[name].append(end - start)
    return {name: statistics.median(values) for name, values in times.items()}


def loop(setup: Setup, loader, steps: int, host_sync: bool, tf32: bool, bf16: bool) -> float:
    """Images per second of the trainer's loop without phase syncs; `host_sync` adds the old per-step `.item()`s."""
    if setup.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    autocast = torch.autocast(setup.device.type, dtype=torch.bfloat16, enabled=bf16)
    batch_size = 0
    for number in range(steps + 1):
        if number == 1:
            sync(setup.device)
            started = time.perf_counter()
        images = next(loader)["images"].to(setup.device, non_blocking=True)
        batch_size = images.shape[0]
        with autocast:
            with torch.no_grad():
                latents = images if setup.vae is None else images_to_latents(setup.vae, images) * 0.2
            tokens = setup.encoder(images).tokens
            generator = step_generator(0, number, 0, setup.device if setup.fast else "cpu")  # before: drawn on the CPU, then copied
            loss = diffusion_loss(setup.unet, setup.scheduler, latents, tokens, generator, setup.config)
        if host_sync and not torch.isfinite(loss).item():
            raise RuntimeError("non-finite loss")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(setup.params, 1.0)
        setup.optimizer.step()
        setup.optimizer.zero_grad(set_to_none=True)
        setup.ema.step(setup.unet.parameters())
        if host_sync:
            setup.last_loss = f"{loss.item():.4f}"  # the progress bar's loss
    sync(setup.device)
    return steps * batch_size / (time.perf_counter() - started)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    overrides = {"preset": args.preset, "max_steps": 1}
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    config = build_config(TrainingConfig, overrides)
    size = build_pipeline(args.preset).concept_encoder.config.sample_size
    dataset, ground_truth = load_training_data(args.data, size)
    if ground_truth is not None:
        ground_truth.warm_up()  # e.g. the procedural geometry, built once and outside every timing
    loader = iter(batch_loader(dataset, config.batch_size, seed=0, num_workers=args.num_workers))

    phase_times = phases(Setup(args, config, device, fast=True), loader, args.steps)
    variants = [("before", False, False, False), ("after", True, False, False)]
    if device.type == "cuda":
        variants += [("after + TF32", True, True, False), ("after + TF32 + bf16", True, True, True)]
    # Variants take turns, a round of `steps` each, so that a machine's drift hits them alike; medians of rounds.
    setups = {name: Setup(args, config, device, fast=fast) for name, fast, _, _ in variants}
    rounds = {name: [] for name, *_ in variants}
    for _ in range(args.rounds):
        for name, fast, tf32, bf16 in variants:
            rounds[name].append(loop(setups[name], loader, args.steps, host_sync=not fast, tf32=tf32, bf16=bf16))
    speeds = {name: statistics.median(values) for name, values in rounds.items()}

    device_name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    total = sum(phase_times.values())
    print(f"{args.preset} on {device_name}, batch {config.batch_size}, {args.num_workers} workers, "
          f"{args.steps} steps per phase table and per round, {args.rounds} rounds")
    print("| phase | ms (median) | share |\n|---|---:|---:|")
    for name, seconds in phase_times.items():
        print(f"| {name} | {1000 * seconds:.1f} | {seconds / total:.0%} |")
    print("| variant | images/s |\n|---|---:|")
    for name, value in speeds.items():
        print(f"| {name} | {value:.0f} |")
    result = {"preset": args.preset, "device": device_name, "torch": torch.__version__, "batch_size": config.batch_size,
              "num_workers": args.num_workers, "steps": args.steps, "rounds": args.rounds, "phase_seconds": phase_times,
              "images_per_second": speeds, "images_per_second_rounds": rounds}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".tmp", "w") as file:
        json.dump(result, file, indent=2)
    os.replace(args.out + ".tmp", args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
