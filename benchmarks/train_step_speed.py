"""How fast the training loop feeds the device: a step's phases and host cost, the loader alone, and
`evaluate`'s encoding.

Uses the trainer's own pieces (`images_to_device`, the first stage, `diffusion_loss`, fused AdamW,
diffusers' EMA, `compile_models`, the loader and its thread settings) on a preset with untrained
weights (speed does not depend on what the weights are). Reports, in this order:

1. Thread settings: cores, the main process's torch threads (as started, and as the trainer leaves
   them beside its loader workers on a GPU), BLAS libraries and their threads.
2. The loader alone, no model: images/s with the configured workers, each with one BLAS and one torch
   thread (`after`), and without that limit (`e6c087c`, the loader at main e6c087c).
3. `evaluate`'s encoding (`--encode-model`): distinct images/s through its code cache (rendering in a
   thread beside the encoder), and rendering alone and encoding alone, after the data's warm-up.
4. Phases (`--phase-steps`), each bracketed by a device synchronisation.
5. The loop as the trainer runs it, no synchronisation inside, in variants that take turns in rounds
   (median images/s); per variant also the host ms/step (the time the host takes to queue one step onto
   an idle device: on a GPU its launch cost; on a CPU, where kernels run as they are queued, the whole
   step) and, from torch's profiler, ops/step (dispatcher and autograd operators) and on a GPU the
   host's launch calls and the kernels run per step.

Variants (on a GPU all but 2026-11-27 with TF32, the trainer's default; the older ones read e6c087c's loader):
  2026-11-27   per-parameter AdamW and EMA, noise drawn on the CPU and copied, a host sync per step
  e6c087c      the loop at main e6c087c: fused AdamW, foreach EMA, device noise, no per-step sync; loader
               workers, and the main process, with a thread per core in torch and BLAS
  after        the trainer now: workers with one BLAS and one torch thread, the main process with the
               cores they leave (on a GPU; a CPU keeps all, see `leave_cores_to_workers`)
  + bf16       bf16 autocast;  + compile: encoder and UNet as `--compile` compiles them (CUDA graphs on a
               GPU), its compile time (the first 3 steps) reported apart; + compile (no CUDA graphs): in
               torch.compile's default mode, the fallback should CUDA graphs fail;  + channels_last
`--max-seconds` skips what would start after that many seconds, so list the variants most important
first; the JSON is rewritten after every measurement, and a variant that fails is recorded, not fatal.

    python benchmarks/train_step_speed.py --preset cpu --steps 10 --rounds 5
    python benchmarks/train_step_speed.py --preset cpu --num-workers 1 --variants "e6c087c,after,after + compile"
    python benchmarks/train_step_speed.py --preset shapes3d --device cuda --num-workers 12 --steps 20 \\
        --encode-model shapes3d --max-seconds 60
"""

import argparse
import copy
import os
import platform
import statistics
import sys
import time
import traceback
from dataclasses import dataclass

import numpy as np
import torch

from concept_diffusion.atomic import write_json
from concept_diffusion.presets import build_pipeline
from concept_diffusion.training import TrainingConfig, build_config
from concept_diffusion.training.data import StepBatchSampler, batch_loader, load_training_data, step_generator
from concept_diffusion.training.runtime import compile_models, images_to_device, leave_cores_to_workers
from concept_diffusion.training.trainer import diffusion_loss, images_to_latents


@dataclass(frozen=True)
class Variant:
    loop: str = "after"
    """"2026-11-27", "e6c087c" or "after": the step's code, the loader's and the main process's threads."""
    bf16: bool = False
    compiled: bool = False
    cuda_graphs: bool = True
    """With `compiled`: as `--compile` compiles (CUDA graphs on a GPU), or False for torch.compile's default mode."""
    channels_last: bool = False


VARIANTS = {
    "2026-11-27": Variant(loop="2026-11-27"),
    "e6c087c": Variant(loop="e6c087c"),
    "e6c087c + bf16": Variant(loop="e6c087c", bf16=True),
    "after": Variant(),
    "after + bf16": Variant(bf16=True),
    "after + compile": Variant(compiled=True),
    "after + compile + bf16": Variant(compiled=True, bf16=True),
    "after + compile (no CUDA graphs) + bf16": Variant(compiled=True, cuda_graphs=False, bf16=True),
    "after + channels_last": Variant(channels_last=True),
}
# Host calls that queue work on a GPU (runtime and driver API names in torch's profiler).
LAUNCHES = {"cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx", "cudaGraphLaunch",
            "cudaMemcpyAsync", "cudaMemsetAsync"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--preset", default="cpu", help="preset name or folder (default: cpu)")
    parser.add_argument("--data", default="shapes3d-procedural")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the preset's training batch size")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers rendering batches")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per round of each variant")
    parser.add_argument("--rounds", type=int, default=5, help="rounds in which the variants take turns (median reported)")
    parser.add_argument("--phase-steps", type=int, default=10, help="steps of the phase table (0: no table)")
    parser.add_argument("--host-steps", type=int, default=5, help="steps timed one by one for host ms/step (then 2 profiled)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated loop variants, most important first (default: all): " + ", ".join(VARIANTS))
    parser.add_argument("--encode-model", default=None,
                        help="time evaluate's encoding with this saved pipeline's folder or preset name (default: not timed)")
    parser.add_argument("--encode-images", type=int, default=20000, help="distinct images encoded for --encode-model")
    parser.add_argument("--max-seconds", type=float, default=None, help="start no measurement after this many seconds")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "train_step_speed.json"))
    args = parser.parse_args(argv)
    args.variants = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = [name for name in args.variants if name not in VARIANTS]
    if unknown or not args.variants:
        parser.error(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}" if unknown else "--variants: none given")
    for name in ("steps", "rounds", "host_steps", "encode_images"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    return args


def e6c087c_loader(dataset, batch_size: int, num_workers: int):
    """The trainer's loader at main e6c087c: the same batches, workers with torch's and BLAS's default threads."""
    from torch.utils.data import DataLoader

    return DataLoader(dataset, sampler=StepBatchSampler(len(dataset), batch_size, seed=0), batch_size=None,
                      num_workers=num_workers, persistent_workers=False, pin_memory=torch.cuda.is_available())


class Setup:
    """A fresh copy of the preset's models, with its optimizer and EMA, for one variant."""

    def __init__(self, pipe, config, device, variant: Variant):
        from diffusers import DDPMScheduler
        from diffusers.training_utils import EMAModel

        old = variant.loop == "2026-11-27"
        self.encoder = copy.deepcopy(pipe.concept_encoder).to(device).train()
        self.unet = copy.deepcopy(pipe.unet).to(device).train()
        self.vae = copy.deepcopy(pipe.vae).to(device).eval().requires_grad_(False) if pipe.vae is not None else None
        self.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        self.params = list(self.encoder.parameters()) + list(self.unet.parameters())
        self.optimizer = torch.optim.AdamW(self.params, lr=1e-4, fused=not old, foreach=False if old else None)
        self.ema = EMAModel(self.unet.parameters(), decay=0.999, use_ema_warmup=True, foreach=not old)
        self.config, self.device, self.variant, self.number = config, device, variant, 0
        self.memory_format = torch.channels_last if variant.channels_last else torch.contiguous_format
        if variant.channels_last:
            for model in (self.encoder, self.unet, self.vae):
                if model is not None:
                    model.to(memory_format=torch.channels_last)
        if variant.compiled and variant.cuda_graphs:
            self.encoder, self.unet = compile_models([self.encoder, self.unet], device)
        elif variant.compiled:
            self.encoder, self.unet = torch.compile(self.encoder), torch.compile(self.unet)
        self.compile_seconds = None

    def step(self, batch: dict) -> int:
        """One training step as the variant's trainer ran it, without waiting for the device; returns the batch size."""
        old, device = self.variant.loop == "2026-11-27", self.device
        images = batch["images"].to(device, non_blocking=True) if old else images_to_device(batch, device, "the benchmark's data")
        images = images.contiguous(memory_format=self.memory_format)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.variant.bf16):
            with torch.no_grad():
                latents = images if self.vae is None else images_to_latents(self.vae, images) * 0.2
            tokens = self.encoder(images).tokens
            generator = step_generator(0, self.number, 0, "cpu" if old else device)  # 2026-11-27: drawn on the CPU, then copied
            loss = diffusion_loss(self.unet, self.scheduler, latents, tokens, generator, self.config)
        if old and not torch.isfinite(loss).item():
            raise RuntimeError("non-finite loss")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.step(self.unet.parameters())
        if old:
            self.last_loss = f"{loss.item():.4f}"  # the progress bar's loss
        self.number += 1
        return images.shape[0]


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

        images = images_to_device(next(loader), device, "the benchmark's data")
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


def loop_speed(setup: Setup, loader, steps: int) -> float:
    """Images per second of `steps` steps with no synchronisation inside. A compiled setup's first call
    compiles, warms up and records its CUDA graphs (3 steps, timed into `setup.compile_seconds`) first."""
    if setup.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = setup.variant.loop != "2026-11-27"
    if setup.variant.compiled and setup.compile_seconds is None:
        started = time.perf_counter()
        for _ in range(3):
            setup.step(next(loader))
        sync(setup.device)
        setup.compile_seconds = time.perf_counter() - started
    setup.step(next(loader))
    sync(setup.device)
    started = time.perf_counter()
    images = sum(setup.step(next(loader)) for _ in range(steps))
    sync(setup.device)
    return images / (time.perf_counter() - started)


def host_cost(setup: Setup, loader, steps: int) -> dict:
    """Host ms/step (median of `steps` steps, each queued onto an idle device, the batch already fetched) and,
    from torch's profiler over 2 more steps, ops, launch calls and kernels per step."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    times = []
    for _ in range(steps):
        batch = next(loader)
        sync(setup.device)
        started = time.perf_counter()
        setup.step(batch)
        times.append(time.perf_counter() - started)
    batches = [next(loader) for _ in range(2)]
    sync(setup.device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if setup.device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        for batch in batches:
            setup.step(batch)
        sync(setup.device)
    events = profiler.events()
    counts = {"ops": sum(event.device_type == DeviceType.CPU and "::" in event.name for event in events) / 2}
    if setup.device.type == "cuda":
        counts["launches"] = sum(event.name in LAUNCHES for event in events) / 2
        counts["kernels"] = sum(event.device_type == DeviceType.CUDA for event in events) / 2
    return {"host_ms": 1000 * statistics.median(times), **counts}


def loader_speed(loader, batches: int) -> float:
    """Images per second of `batches` batches from a loader whose workers have started, no model."""
    next(loader)
    started = time.perf_counter()
    images = sum(next(loader)["images"].shape[0] for _ in range(batches))
    return images / (time.perf_counter() - started)


def encoding_speed(model: str, data, device, num_images: int) -> dict:
    """`evaluate`'s encoding of `num_images` distinct images of `data` by `model` (a saved pipeline's folder or a
    preset name): its code cache (rendering in a thread beside the encoder), and rendering and encoding alone."""
    from concept_diffusion.evaluation.code_cache import RENDER_CHUNK, CodeCache
    from concept_diffusion.evaluation.evaluate import representation_function
    from concept_diffusion.pipelines import ConceptDiffusionPipeline

    pipe = ConceptDiffusionPipeline.from_pretrained(model) if os.path.isdir(model) else build_pipeline(model)
    size = pipe.concept_encoder.config.sample_size
    if data is None or data.image_size != size:
        raise ValueError(f"--encode-model {model} encodes {size}x{size} images: expected a model of the preset's image size, "
                         "on --data with factors")
    representation_fn, restore = representation_function(pipe.to(device))
    indices = np.sort(np.random.default_rng(0).choice(len(data), min(len(data), num_images + RENDER_CHUNK), replace=False))
    first, rest = indices[:RENDER_CHUNK], indices[RENDER_CHUNK:]
    images = data.images(first)
    representation_fn(images)  # warm-up: cuDNN's autotuner, the allocator

    def seconds(work) -> float:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            work()
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    render, encode = seconds(lambda: data.images(first)), seconds(lambda: representation_fn(images))
    started = time.perf_counter()
    CodeCache(data, representation_fn, progress=False).prefetch(rest)
    both = time.perf_counter() - started
    restore()
    return {"model": model, "images": int(rest.size), "image_size": data.image_size, "images_per_second": rest.size / both,
            "render_images_per_second": len(first) / render, "encode_images_per_second": len(first) / encode}


def thread_settings(device, num_workers: int) -> dict:
    """What the main process, the workers and the BLAS libraries may use, e6c087c's and the trainer's now."""
    from threadpoolctl import threadpool_info

    started_with = torch.get_num_threads()
    after = leave_cores_to_workers(device, num_workers)
    torch.set_num_threads(started_with)
    return {
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "main_torch_threads": {"e6c087c": started_with, "after": after},
        "worker_threads": {"e6c087c": "torch 1 (DataLoader's own), BLAS as the main process", "after": "torch 1, BLAS 1"},
        "libraries": [f"{lib['internal_api']} ({lib['user_api']}): {lib['num_threads']} threads" for lib in threadpool_info()],
        "environment": {name: os.environ[name] for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS") if name in os.environ},
    }


class Run:
    """The measurements so far, rewritten to `out` after each one; `--max-seconds` as a deadline."""

    def __init__(self, out: str, max_seconds, result: dict):
        self.out, self.result = out, result
        self.deadline = None if max_seconds is None else time.monotonic() + max_seconds
        result.update({"images_per_second_rounds": {}, "host": {}, "compile_seconds": {}, "errors": {}, "skipped": []})

    def out_of_time(self, what: str) -> bool:
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.result["skipped"].append(what)
            self.save()
            return True
        return False

    def failed(self, name: str, error: Exception) -> None:
        traceback.print_exc()
        self.result["errors"][name] = f"{type(error).__name__}: {error}"[:2000]
        self.save()

    def save(self) -> None:
        rounds = self.result["images_per_second_rounds"]
        self.result["images_per_second"] = {name: statistics.median(values) for name, values in rounds.items() if values}
        write_json(self.out, self.result)


def measure_variants(run: Run, args, pipe, config, device, loaders: dict, threads: dict) -> None:
    """The variants in rounds; each variant's first round also measures its host cost. A variant that fails is
    recorded and left out of the later rounds (one GPU session: it must not take the others with it)."""
    setups = {}
    for round_number in range(args.rounds):
        for name in args.variants:
            if name in run.result["errors"] or run.out_of_time(f"{name}, round {round_number + 1}"):
                continue
            variant = VARIANTS[name]
            torch.set_num_threads(threads[variant.loop == "after"])
            loader = loaders["after" if variant.loop == "after" else "e6c087c"]
            try:
                if name not in setups:
                    setups[name] = Setup(pipe, config, device, variant)
                setup = setups[name]
                run.result["images_per_second_rounds"].setdefault(name, []).append(loop_speed(setup, loader, args.steps))
            except Exception as error:
                run.failed(name, error)
                setups.pop(name, None)
                continue
            if setup.compile_seconds is not None:
                run.result["compile_seconds"][name] = setup.compile_seconds
            if round_number == 0:
                try:
                    run.result["host"][name] = host_cost(setup, loader, args.host_steps)
                except Exception as error:  # e.g. a profiler without CUPTI: the speed still counts
                    traceback.print_exc()
                    run.result["host"][name] = {"error": f"{type(error).__name__}: {error}"[:2000]}
            run.save()


def prepare(args, device):
    """The preset's config, pipeline (on `device`'s side of the copies), data (warmed up) and the two loaders."""
    overrides = {"preset": args.preset, "max_steps": 1}
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    config = build_config(TrainingConfig, overrides)
    pipe = build_pipeline(args.preset, seed=0)
    dataset, ground_truth = load_training_data(args.data, pipe.concept_encoder.config.sample_size)
    started = time.perf_counter()
    if ground_truth is not None:
        ground_truth.warm_up()  # e.g. the procedural geometry, built once and outside every timing
    warm_up = time.perf_counter() - started
    loaders = {"after": iter(batch_loader(dataset, config.batch_size, seed=0, num_workers=args.num_workers)),
               "e6c087c": iter(e6c087c_loader(dataset, config.batch_size, args.num_workers))}
    return config, pipe, ground_truth, warm_up, loaders


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"  # as the trainer sets it (`make_accelerator`)
    config, pipe, ground_truth, warm_up, loaders = prepare(args, device)
    threads = thread_settings(device, args.num_workers)
    device_name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else f"{platform.processor() or platform.machine()}, {threads['cores']} cores")
    run = Run(args.out, args.max_seconds, {
        "preset": args.preset, "device": device_name, "torch": torch.__version__, "batch_size": config.batch_size,
        "num_workers": args.num_workers, "steps": args.steps, "rounds": args.rounds, "threads": threads,
        "data_warm_up_seconds": warm_up})
    print(f"{args.preset} on {device_name}, torch {torch.__version__}, batch {config.batch_size}, {args.num_workers} workers")
    print_threads(threads)
    batches = max(8 * args.num_workers, -(-20000 // config.batch_size))  # past the workers' prefetched batches
    run.result["loader_images_per_second"] = {name: loader_speed(loader, batches) for name, loader in loaders.items()}
    run.save()
    if args.encode_model and not run.out_of_time("encoding"):
        run.result["encoding"] = encoding_speed(args.encode_model, ground_truth, device, args.encode_images)
        run.save()
    if args.phase_steps and not run.out_of_time("phases"):
        torch.set_num_threads(threads["main_torch_threads"]["after"])
        run.result["phase_seconds"] = phases(Setup(pipe, config, device, Variant()), loaders["after"], args.phase_steps)
        run.save()
    main_threads = {False: threads["main_torch_threads"]["e6c087c"], True: threads["main_torch_threads"]["after"]}
    measure_variants(run, args, pipe, config, device, loaders, main_threads)
    run.save()
    print_report(run.result)
    print(f"wrote {args.out}")
    return 0


def print_threads(threads: dict) -> None:
    main = threads["main_torch_threads"]
    print(f"threads: {threads['cores']} cores; main process torch {main['e6c087c']} (e6c087c) / {main['after']} (after); "
          f"workers: {threads['worker_threads']['after']} (after), {threads['worker_threads']['e6c087c']} (e6c087c); "
          f"{'; '.join(threads['libraries'])}; environment {threads['environment'] or 'unset'}")


def print_report(result: dict) -> None:
    print(f"data warm-up (before any timing): {result['data_warm_up_seconds']:.1f} s")
    print("| loader alone | images/s |\n|---|---:|")
    for name, value in result["loader_images_per_second"].items():
        print(f"| {name} | {value:,.0f} |")
    if "encoding" in result:
        enc = result["encoding"]
        print(f"evaluate's encoding, {enc['model']}, {enc['images']:,} distinct {enc['image_size']}px images: "
              f"{enc['images_per_second']:,.0f} images/s (rendering alone {enc['render_images_per_second']:,.0f}, "
              f"encoding alone {enc['encode_images_per_second']:,.0f})")
    if "phase_seconds" in result:
        total = sum(result["phase_seconds"].values())
        print("| phase | ms (median) | share |\n|---|---:|---:|")
        for name, seconds in result["phase_seconds"].items():
            print(f"| {name} | {1000 * seconds:.1f} | {seconds / total:.0%} |")
    print("| variant | images/s | host ms/step | ops/step | launches/step | kernels/step | compile s |\n|---|---:|---:|---:|---:|---:|---:|")
    for name, speed in result["images_per_second"].items():
        host = result["host"].get(name, {})
        cells = [f"{host[key]:.1f}" if key in host else "" for key in ("host_ms", "ops", "launches", "kernels")]
        compiled = result["compile_seconds"].get(name)
        print(f"| {name} | {speed:,.0f} | {' | '.join(cells)} | {'' if compiled is None else f'{compiled:.0f}'} |")
    for name, error in result["errors"].items():
        print(f"{name}: FAILED: {error}")
    for name, host in result["host"].items():
        if "error" in host:
            print(f"{name}: host cost not measured: {host['error']}")
    if result["skipped"]:
        print(f"skipped for --max-seconds: {', '.join(result['skipped'])}")


if __name__ == "__main__":
    sys.exit(main())
