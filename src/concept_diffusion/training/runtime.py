"""What both training stages run on: the accelerator, the run folder, resuming, and one loop skeleton.

The loop never waits for the device except where every process stops to log, evaluate or save:
a non-finite loss is remembered on the device and raised at the next of those points, and the
processes agree on the clock only there.
"""

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import torch

from concept_diffusion.training.checkpoints import check_same_config, read_state, resolve_resume, save_checkpoint
from concept_diffusion.training.data import batch_loader
from concept_diffusion.training.schedules import RunProgress, run_progress

logger = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def check_writable(folder: str) -> None:
    """Fail before training, not after it, when the run folder cannot be written."""
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, ".write-test")
        with open(probe, "wb") as file:
            file.write(b"\0" * 65536)
        os.remove(probe)
    except OSError as error:
        raise ValueError(f"output_dir {folder} is not writable ({error.strerror or error}): choose another folder or free space") from error


def make_accelerator(allow_tf32: bool = True, **kwargs):
    """An `Accelerator`; several processes without a GPU (torchrun, `accelerate launch --cpu`) train as one
    job over gloo, which accelerate only does when told it runs on the CPU. On a GPU: TF32 matmuls and
    convolutions where `allow_tf32`, and cuDNN's autotuner (the shapes never change)."""
    from accelerate import Accelerator

    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allow_tf32
        torch.backends.cudnn.benchmark = True
    multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    return Accelerator(cpu=multi_cpu, **kwargs)


def start_run(config):
    """Check the run folder, then build the accelerator of either stage's `config`.

    `mixed_precision=None` (the default) leaves the choice to `accelerate launch --mixed_precision`
    and accelerate's config file, as accelerate's own scripts do.
    """
    from accelerate.utils import ProjectConfiguration

    check_writable(config.output_dir)
    return make_accelerator(
        allow_tf32=config.allow_tf32,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        mixed_precision=config.mixed_precision,
        log_with=None if config.report_to == "none" else config.report_to,
        project_config=ProjectConfiguration(project_dir=config.output_dir, logging_dir=os.path.join(config.output_dir, "logs")),
    )


def resume_point(config):
    """`(checkpoint folder, its trainer_state)` for `config.resume`, checked against `config`; `(None, None)` without."""
    if not config.resume:
        return None, None
    path = resolve_resume(config.resume, config.output_dir)
    state = read_state(path)
    defaults = {field.name: field.default for field in dataclasses.fields(config) if field.default is not dataclasses.MISSING}
    check_same_config(state["config"], config.to_dict(), path, defaults)
    return path, state


def continue_run(accelerator, config, resume_path: Optional[str], resume_state: Optional[dict], project: str) -> int:
    """Load the checkpoint (after `accelerator.prepare`) and start the trackers; returns the step to continue from."""
    step = 0
    if resume_path is not None:
        accelerator.load_state(resume_path)
        step = resume_state["step"]
        logger.info("resumed from %s at step %d", resume_path, step)
    if accelerator.is_main_process:
        accelerator.init_trackers(project, config={key: str(value) for key, value in config.to_dict().items()})
    return step


def step_loader(dataset, config, accelerator, step: int):
    """The batches from optimizer step `step` on, this process's slice of each (each worker with one thread:
    `batch_loader`); the main process keeps the cores they leave (`leave_cores_to_workers`)."""
    leave_cores_to_workers(accelerator.device, config.num_workers)
    return batch_loader(dataset, config.batch_size, config.seed, start=step * config.gradient_accumulation_steps,
                        num_workers=config.num_workers, num_processes=accelerator.num_processes,
                        process_index=accelerator.process_index)


def leave_cores_to_workers(device, num_workers: int) -> int:
    """On a GPU, lower this process's torch threads to the cores its loader workers leave; returns the count.

    There the main process only queues kernels (and checks each batch on the host), and a full-size pool
    beside busy workers makes its parallel regions wait for descheduled threads. The cores are shared
    among the processes on this node (`LOCAL_WORLD_SIZE`). On a CPU the step's arithmetic runs in the
    main process while the workers mostly wait (a batch renders in a fraction of a step), so it keeps its threads.
    """
    threads = torch.get_num_threads()
    if num_workers and torch.device(device).type != "cpu":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        threads = min(threads, max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")) - num_workers))
        torch.set_num_threads(threads)
    logger.info("main process: %d torch threads; %d loader workers with one BLAS and one torch thread each", threads, num_workers)
    return threads


def open_log(accelerator, config):
    """The run's JSONL log, appended to on the main process (the other processes write nowhere)."""
    return open(os.path.join(config.output_dir, "log.jsonl"), "a") if accelerator.is_main_process else open(os.devnull, "w")


def plain_model(accelerator, model: torch.nn.Module) -> torch.nn.Module:
    """`model` without accelerate's wrappers (DDP) or torch.compile's (`accelerate launch --dynamo_backend`):
    the module to save, sample with, or take a layer's weight from."""
    return accelerator.unwrap_model(model, keep_torch_compile=False)


def compile_mode(device, num_processes: int = 1, gradient_accumulation_steps: int = 1) -> str:
    """torch.compile's mode for `--compile`: "reduce-overhead" (CUDA graphs) on one GPU without gradient
    accumulation, else "default". A CPU has no CUDA graphs; with accumulation a replay would reuse the memory
    of gradients still being summed; several processes (DDP's gradient hooks) are not tried with graphs."""
    one_gpu = torch.device(device).type == "cuda" and num_processes == 1
    return "reduce-overhead" if one_gpu and gradient_accumulation_steps == 1 else "default"


def compile_models(models: list, device, num_processes: int = 1, gradient_accumulation_steps: int = 1) -> list:
    """`models` (as `accelerator.prepare` returned them) wrapped by torch.compile in `compile_mode`.

    Only the training step calls the wrappers: `plain_model` unwraps them for sampling, scoring and saving,
    which run uncompiled (in eval mode, at other batch sizes). Models already compiled by
    `accelerate launch --dynamo_backend` stay as they are.
    """
    from accelerate.utils import is_compiled_module

    mode = compile_mode(device, num_processes, gradient_accumulation_steps)
    logger.info("torch.compile (mode %r) of %d models: the first steps compile", mode, len(models))
    return [model if is_compiled_module(model) else torch.compile(model, mode=mode) for model in models]


def images_to_device(batch: dict, device, source: str) -> torch.Tensor:
    """The batch's images on `device`, checked on the host first (where the check costs no device sync):
    the encoder does not look for NaN or infinite pixels itself."""
    images = batch["images"]
    if not torch.isfinite(images).all():
        raise ValueError(f"{source} gave a batch with NaN or infinite pixels: fix or drop those images")
    return images.to(device, non_blocking=True)


def any_process(accelerator, flag: bool) -> bool:
    """True on every process when `flag` is true on one: stopping decisions must agree."""
    if accelerator.num_processes == 1:
        return flag
    return bool(accelerator.reduce(torch.tensor([float(flag)], device=accelerator.device), reduction="sum").item() > 0)


def agreed_seconds(accelerator, seconds: float) -> float:
    """The largest of the processes' `seconds`, on every process, so that a schedule that follows the clock (the
    learning rate's decay in a run that stops on time) sets the same values in every replica."""
    if accelerator.num_processes == 1:
        return seconds
    return float(accelerator.reduce(torch.tensor([seconds], device=accelerator.device), reduction="max").item())


@dataclass
class Stage:
    """What a training stage plugs into `run_loop`: functions of explicit state, built with `functools.partial`."""

    name: str
    """tqdm description, e.g. "training EncDiff"."""
    step: Callable[[dict, int], Dict[str, torch.Tensor]]
    """(batch, batch number) -> detached losses ({"loss": ..., ...}); runs one micro-batch under
    `accelerator.accumulate` and, when gradients sync, the optimizer step (and EMA)."""
    trainer_state: Callable[[], dict]
    """Fields saved beside each checkpoint (trainer_state.json) besides the step."""
    lr_scheduler: object
    """Its current learning rate is logged."""
    evaluate: Optional[Callable[[int], dict]] = None
    """step -> scores, on the main process every `eval_every` steps."""
    eval_every: int = 0
    progress: Optional[RunProgress] = None
    """Set to the run's progress (`schedules.run_progress`) before each micro-batch, for the stage's schedules."""


@dataclass
class LoopResult:
    step: int
    seconds: float
    last_checkpoint: Optional[str]


class DivergenceWatch:
    """Remembers, on the device, the first step whose loss was not finite; raises where the processes meet."""

    def __init__(self, accelerator, config):
        self.accelerator, self.config = accelerator, config
        self.first_bad_step = torch.zeros((), dtype=torch.long, device=accelerator.device)

    def record(self, loss: torch.Tensor, step: int) -> None:
        self.first_bad_step = torch.where((self.first_bad_step == 0) & ~torch.isfinite(loss), step, self.first_bad_step)

    def raise_if_diverged(self, last_checkpoint: Optional[str]) -> None:
        """A host sync: called only at log, evaluation, checkpoint and stop steps."""
        steps = [int(value) for value in self.accelerator.gather(self.first_bad_step[None]).tolist()]
        bad_step = min((value for value in steps if value > 0), default=0)
        if bad_step:
            raise TrainingDiverged(
                f"the loss became NaN or infinite at step {bad_step}: lower learning_rate (now {self.config.learning_rate}), "
                f"raise lr_warmup_steps or use mixed_precision='no'. The last good checkpoint is "
                f"{last_checkpoint or 'none (no checkpoint was saved yet)'}; resume from it with --resume"
            )


def write_record(accelerator, log_file, record: dict) -> None:
    """One line of the JSONL log (main process) and the same values to accelerate's trackers."""
    if accelerator.is_main_process:
        log_file.write(json.dumps(record) + "\n")
        log_file.flush()
        accelerator.log({key: value for key, value in record.items() if key not in ("step", "final")}, step=record["step"])


def global_batch(accelerator, config) -> int:
    return config.batch_size * config.gradient_accumulation_steps * accelerator.num_processes


def run_loop(accelerator, config, stage: Stage, loader, step: int, last_checkpoint: Optional[str], log_file) -> LoopResult:
    """Train from `step` until `config.max_steps` or `config.max_minutes`: log, evaluate, checkpoint, stop.

    Returns at the stop step without a final checkpoint; the caller finishes the run.
    """
    from tqdm.auto import tqdm

    progress = tqdm(total=config.max_steps, initial=step, desc=stage.name, unit="step",
                    disable=not accelerator.is_local_main_process, dynamic_ncols=True)
    watch = DivergenceWatch(accelerator, config)
    images_per_step = global_batch(accelerator, config)
    images_at_start, number = step * images_per_step, step * config.gradient_accumulation_steps
    started = time.monotonic()
    clock = 0.0  # seconds of training that every process agrees on (they meet at log steps): the schedules' time
    try:
        for batch in loader:
            if stage.progress is not None:
                stage.progress.value = run_progress(config.max_steps, config.max_minutes, step, clock)
            losses = stage.step(batch, number)
            number += 1
            watch.record(losses["loss"], step + 1)
            if not accelerator.sync_gradients:
                continue
            step += 1
            elapsed = time.monotonic() - started
            progress.update(1)
            out_of_steps = config.max_steps is not None and step >= config.max_steps
            out_of_time = config.max_minutes is not None and elapsed >= 60 * config.max_minutes
            at_log = step % config.log_every == 0 or step == 1 or out_of_steps
            at_eval = stage.evaluate is not None and bool(stage.eval_every) and step % stage.eval_every == 0
            at_checkpoint = bool(config.checkpoint_every) and step % config.checkpoint_every == 0 and not out_of_steps
            # Several processes agree on the clock at log steps only: an all-reduce per step would stall the device.
            if accelerator.num_processes == 1 or at_log:
                clock = agreed_seconds(accelerator, elapsed)
            stop = (accelerator.num_processes == 1 or at_log) and any_process(accelerator, out_of_steps or out_of_time)
            at_log = at_log or stop  # the last step's loss is always logged
            if at_log or at_eval or at_checkpoint or stop:
                watch.raise_if_diverged(last_checkpoint)
            record = {"step": step, "images_seen": step * images_per_step, "seconds": round(elapsed, 3)}
            if at_log:
                record.update({name: float(accelerator.gather(value[None]).mean()) for name, value in losses.items()})
                record["lr"] = stage.lr_scheduler.get_last_lr()[0]
                postfix = {"loss": f"{record['loss']:.4f}", "img/s": f"{(record['images_seen'] - images_at_start) / max(elapsed, 1e-9):.0f}"}
                if config.max_minutes is not None:
                    postfix["left"] = tqdm.format_interval(max(60 * config.max_minutes - elapsed, 0))  # 1:31:42 past an hour
                progress.set_postfix(postfix, refresh=False)
            if at_eval:
                if accelerator.is_main_process:
                    record.update(stage.evaluate(step))
                accelerator.wait_for_everyone()
            if at_log or at_eval:
                write_record(accelerator, log_file, record)
            if at_checkpoint:
                last_checkpoint = save_checkpoint(accelerator, config.output_dir, step, stage.trainer_state(), config.checkpoints_total_limit)
            if stop:
                break
    finally:
        progress.close()
    return LoopResult(step=step, seconds=time.monotonic() - started, last_checkpoint=last_checkpoint)
