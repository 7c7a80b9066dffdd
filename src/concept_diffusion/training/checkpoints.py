"""Checkpoints that are whole or absent, pruned to the last few, and checked against the run's config.

A checkpoint is `accelerator.save_state` (models as safetensors, optimizer, lr schedule, EMA) plus
`trainer_state.json` (step, latent scaling factor, the config that made it), written into a
hidden folder and renamed to `checkpoint-<step>` when complete. These are the user's own files:
accelerate pickles optimizer and RNG states, so never resume from a checkpoint you did not make.
"""

import json
import os
import re
import shutil
from typing import Optional

from concept_diffusion.atomic import write_json

STATE_FILE = "trainer_state.json"
CHECKPOINT_PATTERN = re.compile(r"checkpoint-(\d+)")

# Fields that may change between a run and its resumption without changing what is trained.
RESUMABLE_FIELDS = {
    "output_dir", "resume", "max_steps", "max_minutes", "eval_every", "eval_metrics", "eval_samples",
    "sample_steps", "checkpoint_every", "checkpoints_total_limit", "report_to", "log_every", "push_to_hub",
    "num_workers", "allow_tf32", "eval_final", "compile",
}


def checkpoint_dir(output_dir: str) -> str:
    return os.path.join(output_dir, "checkpoints")


def list_checkpoints(output_dir: str) -> list:
    """Complete checkpoints of a run, oldest first."""
    folder = checkpoint_dir(output_dir)
    if not os.path.isdir(folder):
        return []
    found = [(int(m.group(1)), os.path.join(folder, name)) for name in os.listdir(folder) if (m := CHECKPOINT_PATTERN.fullmatch(name))]
    return [path for _, path in sorted(found)]


def resolve_resume(resume: str, output_dir: str) -> str:
    """The checkpoint folder for `--resume latest|PATH|checkpoint-<step>` (the last one inside the run's checkpoints/,
    as diffusers' `--resume_from_checkpoint` reads it)."""
    if resume == "latest":
        checkpoints = list_checkpoints(output_dir)
        if not checkpoints:
            raise FileNotFoundError(f"--resume latest: no checkpoint in {checkpoint_dir(output_dir)}; start without --resume")
        return checkpoints[-1]
    for candidate in (resume, os.path.join(checkpoint_dir(output_dir), resume)):
        if os.path.isfile(os.path.join(candidate, STATE_FILE)):
            return candidate
    raise FileNotFoundError(f"--resume {resume}: not a checkpoint folder (no {STATE_FILE}); pass 'latest', a checkpoint-<step> "
                            f"folder or the name of one in {checkpoint_dir(output_dir)}")


def read_state(path: str) -> dict:
    with open(os.path.join(path, STATE_FILE)) as file:
        return json.load(file)


def check_same_config(saved: dict, current: dict, path: str, defaults: Optional[dict] = None) -> None:
    """Raise a ValueError naming each field where `current` differs from the checkpoint's config.

    A field the checkpoint lacks (it was saved before the field existed) reads as its value in `defaults`,
    so a run saved by an older version resumes as long as the new options stay at their defaults.
    """
    saved = {**(defaults or {}), **saved}
    differing = sorted(
        key for key in set(saved) | set(current)
        if key not in RESUMABLE_FIELDS and saved.get(key) != current.get(key)
    )
    if differing:
        details = ", ".join(f"{key}: checkpoint {saved.get(key)!r} vs now {current.get(key)!r}" for key in differing)
        raise ValueError(f"cannot resume from {path}: the config differs in {details}. Use the checkpoint's values or start a new run")


def save_checkpoint(accelerator, output_dir: str, step: int, state: dict, total_limit: int) -> str:
    """Save the accelerator state and `state` as `checkpoint-<step>`, atomically; keep the last `total_limit`.

    The staging folder has a name every process can compute (`atomic_directory` draws a random one),
    because each process writes its own part of accelerate's state into it.
    """
    folder = checkpoint_dir(output_dir)
    final = os.path.join(folder, f"checkpoint-{step}")
    staging = os.path.join(folder, f".incomplete-checkpoint-{step}")
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging)
    accelerator.wait_for_everyone()
    accelerator.save_state(staging, safe_serialization=True)
    if accelerator.is_main_process:
        write_json(os.path.join(staging, STATE_FILE), {**state, "step": step})
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        for old in list_checkpoints(output_dir)[:-total_limit] if total_limit > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final
