"""Where a training step of stage 2 spends its time, and how fast the whole loop runs.

Uses the trainer's own pieces (data loader, first stage, `diffusion_loss`, AdamW, diffusers' EMA)
on a preset with untrained weights (speed does not depend on what the weights are). Two tables:

1. Phases, each bracketed by a device synchronisation: next batch from the loader, first-stage
   encoding, forward (encoder + UNet + loss), backward, optimizer (clip + AdamW), EMA update.
2. The loop as the trainer runs it, with no synchronisation inside, in variants side by side:
   `before` (the trainer until 2026-11-27: per-parameter AdamW and EMA, noise and timesteps drawn
   on the CPU and copied over, a host sync per step for the NaN check and the progress bar),
   `after` (fused AdamW, foreach EMA, noise drawn on the device, no per-step sync), and `after` with
   bf16 autocast, with `channels_last` memory format and with `torch.compile` of encoder and UNet (on a
   GPU also with TF32). All read the same loader (pinned memory on a GPU). The compiled variant's
   compile time (its first steps) is reported apart, with the images after which it has paid for itself.

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


# name: (fast, tf32, bf16, channels_last, torch.compile); the TF32 ones run on a GPU only.
VARIANTS = {
    "before": (False, False, False, False, False),
    "after": (True, False, False, False, False),
    "after + bf16": (True, False, True, False, False),
    "after + channels_last": (True, False, False, True, False),
    "after + torch.compile": (True, False, False, False, True),
    "after + TF32": (True, True, False, False, False),
    "after + TF32 + bf16": (True, True, True, False, False),
    "after + TF32 + bf16 + channels_last": (True, True, True, True, False),
    "after + TF32 + bf16 + torch.compile": (True, True, True, False, True),
}


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
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated loop variants to time (default: all; the TF32 ones only on a GPU): " + ", ".join(VARIANTS))
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "train_step_speed.json"))
    args = parser.parse_args(argv)
    args.variants = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = [name for name in args.variants if name not in VARIANTS]
    if unknown or "after" not in args.variants:
        parser.error(f"--variants: unknown {unknown}" if unknown else "--variants must include 'after', the reference of the others")
    return args


class Setup:
    """A fresh model, optimizer and EMA for one variant; the data loader is shared."""

    def __init__(self, args, config, device, fast: bool, channels_last: bool = False, compiled: bool = False):
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
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            for model in (self.encoder, self.unet, self.vae):
                if model is not None:
                    model.to(memory_format=torch.channels_last)
        self.compiled, self.compile_seconds = compiled, None
        if compiled:
            self.encoder, self.unet = torch.compile(self.encoder), torch.compile(self.unet)


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
    """Images per second of the trainer's loop without phase syncs; `host_sync` adds the old per-step `.item()`s.
    The first call of a compiled setup compiles (timed into `setup.compile_seconds`) before the timed steps."""
    if setup.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    if setup.compiled and setup.compile_seconds is None:
        started = time.perf_counter()
        loop_steps(setup, loader, 2, host_sync, bf16)
        sync(setup.device)
        setup.compile_seconds = time.perf_counter() - started
    loop_steps(setup, loader, 1, host_sync, bf16)
    sync(setup.device)
    started = time.perf_counter()
    batch_size = loop_steps(setup, loader, steps, host_sync, bf16)
    sync(setup.device)
    return steps * batch_size / (time.perf_counter() - started)


def loop_steps(setup: Setup, loader, steps: int, host_sync: bool, bf16: bool) -> int:
    """`steps` training steps as the trainer runs them; returns the batch size."""
    autocast = torch.autocast(setup.device.type, dtype=torch.bfloat16, enabled=bf16)
    batch_size = 0
    for number in range(steps):
        images = next(loader)["images"].to(setup.device, non_blocking=True).contiguous(memory_format=setup.memory_format)
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
    return batch_size


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
    # Variants take turns, a round of `steps` each, so that a machine's drift hits them alike; medians of rounds.
    variants = {name: VARIANTS[name] for name in args.variants if device.type == "cuda" or not VARIANTS[name][1]}
    setups = {name: Setup(args, config, device, fast, channels_last, compiled)
              for name, (fast, _, _, channels_last, compiled) in variants.items()}
    rounds = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (fast, tf32, bf16, _, _) in variants.items():
            rounds[name].append(loop(setups[name], loader, args.steps, host_sync=not fast, tf32=tf32, bf16=bf16))
    speeds = {name: statistics.median(values) for name, values in rounds.items()}
    compile_seconds = {name: setup.compile_seconds for name, setup in setups.items() if setup.compile_seconds is not None}

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
    for name, seconds in compile_seconds.items():
        reference = name.replace(" + torch.compile", "")  # the same loop, not compiled
        saved = 1 / speeds[reference] - 1 / speeds[name] if reference in speeds else 0.0  # seconds per image
        repaid = f"repaid after {seconds / saved:,.0f} images (against {reference!r})" if saved > 0 else "not repaid"
        print(f"{name}: {seconds:.1f} s to compile (first 2 steps), {repaid}")
    result = {"preset": args.preset, "device": device_name, "torch": torch.__version__, "batch_size": config.batch_size,
              "num_workers": args.num_workers, "steps": args.steps, "rounds": args.rounds, "phase_seconds": phase_times,
              "images_per_second": speeds, "images_per_second_rounds": rounds,
              "compile_seconds": compile_seconds}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".tmp", "w") as file:
        json.dump(result, file, indent=2)
    os.replace(args.out + ".tmp", args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
