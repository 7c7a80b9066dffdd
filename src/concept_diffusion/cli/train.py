"""`concept-diffusion train` (stage 2, EncDiff) and `concept-diffusion train-vae` (stage 1).

Every field of the config dataclasses is a flag, spelt `--max_steps` or `--max-steps`, plus the
spellings of diffusers' example scripts (`--train_batch_size`, `--max_train_steps`,
`--checkpointing_steps`, `--resume_from_checkpoint`, `--push_to_hub --hub_model_id REPO`).
`transformers.HfArgumentParser` builds them from the dataclasses. The preset (`--preset`) and a
`--config run.yaml` file are read first, so the defaults `--help` shows are the ones that train.
Under `accelerate launch` or `torchrun` the same command trains on many processes.
"""

import argparse
import dataclasses
import os
import typing


def register(subparsers) -> None:
    # The flags depend on the preset, so each subcommand takes its arguments raw and parses them
    # itself once `--preset` is known; `add_help=False` passes `--help` on to that parser.
    train = subparsers.add_parser("train", add_help=False, help="train EncDiff (concept encoder + UNet) on a data set")
    train.set_defaults(func=run_train, takes_flags=True)
    vae = subparsers.add_parser("train-vae", add_help=False, help="train the first-stage autoencoder of a latent preset")
    vae.set_defaults(func=run_train_vae, takes_flags=True)


def _preset_and_file(flags: list) -> argparse.Namespace:
    early = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    early.add_argument("--preset")
    early.add_argument("--config", dest="config_file")
    return early.parse_known_args(flags)[0]


def _accept_none(kind):
    """Optional fields also take `none` (e.g. `--max_steps none` to stop on time only)."""
    return lambda text: None if text.lower() == "none" else kind(text)


def build_parser(config_class, flags: list, prog: str, description: str):
    """An `HfArgumentParser` for `config_class` whose defaults are the preset's (and the config file's)."""
    from transformers import HfArgumentParser

    from concept_diffusion.training.config import build_config, field_docs

    early = _preset_and_file(flags)
    defaults = build_config(config_class, {} if early.preset is None else {"preset": early.preset}, early.config_file)
    parser = HfArgumentParser(config_class, prog=prog, description=description, allow_abbrev=False)
    parser.add_argument("--config", dest="config_file", default=None,
                        help="YAML or JSON file of config fields, read after the preset's training.json (flags override it)")
    docs, hints = field_docs(config_class), typing.get_type_hints(config_class)
    fields = {field.name for field in dataclasses.fields(config_class)}
    # HfArgumentParser reads help from field metadata; ours is each field's docstring. Lists may be
    # empty (`--eval_metrics` alone turns the metrics off), and Optional fields take `none`.
    for action in parser._actions:
        if action.dest not in fields or action.help == argparse.SUPPRESS:
            continue
        action.help = docs.get(action.dest, "")
        if action.nargs == "+":
            action.nargs = "*"
        if type(None) in typing.get_args(hints[action.dest]) and action.type is not None and action.nargs != 0:
            action.type = _accept_none(action.type)
    parser.set_defaults(**dataclasses.asdict(defaults))
    return parser


def parse_config(config_class, flags: list, prog: str, description: str, extra_flags=None):
    """`(config, leftover namespace)` from command-line flags; `extra_flags(parser)` may add flags that are not fields."""
    from concept_diffusion.training.config import check_config

    parser = build_parser(config_class, flags, prog, description)
    if extra_flags is not None:
        extra_flags(parser)
    config, extra = parser.parse_args_into_dataclasses(args=flags, look_for_args_file=False)
    check_config(config)
    return config, extra


def _hub_flags(parser) -> None:
    action = next(action for action in parser._actions if action.dest == "push_to_hub")
    action.nargs, action.const = "?", ""  # a bare `--push_to_hub`, as in diffusers' scripts
    parser.add_argument("--hub_model_id", "--hub-model-id", default=None,
                        help="repo id for a bare --push_to_hub (diffusers' spelling); default: the output_dir's name")


def resolve_hub_repo(push_to_hub, hub_model_id, output_dir: str):
    """The repo to push to from `--push_to_hub [REPO]` and `--hub_model_id REPO`; None for no push."""
    if push_to_hub is None:
        if hub_model_id is not None:
            raise ValueError(f"--hub_model_id {hub_model_id} without --push_to_hub: add --push_to_hub to push there")
        return None
    if push_to_hub and hub_model_id and push_to_hub != hub_model_id:
        raise ValueError(f"--push_to_hub {push_to_hub} and --hub_model_id {hub_model_id} name different repos: give one")
    return push_to_hub or hub_model_id or os.path.basename(os.path.normpath(output_dir))


def train_config(flags: list):
    """The `TrainingConfig` of `concept-diffusion train FLAGS...` (with the repo of `--push_to_hub` resolved)."""
    from concept_diffusion.training import TrainingConfig

    config, extra = parse_config(TrainingConfig, flags, "concept-diffusion train", _TRAIN_DESCRIPTION, _hub_flags)
    return dataclasses.replace(config, push_to_hub=resolve_hub_repo(config.push_to_hub, extra.hub_model_id, config.output_dir))


def run_train(args) -> int:
    from concept_diffusion.training import train

    result = train(train_config(args.flags))
    print(f"trained {result.step} steps ({result.images_seen} images) in {result.seconds / 60:.1f} min")
    print(f"pipeline: {result.pipeline_dir}")
    for name, value in result.metrics.items():
        print(f"  {name}: {value:.4f}")
    return 0


def run_train_vae(args) -> int:
    from concept_diffusion.training import AutoencoderTrainingConfig, train_autoencoder

    config, _ = parse_config(AutoencoderTrainingConfig, args.flags, "concept-diffusion train-vae", _VAE_DESCRIPTION)
    print(f"first stage: {train_autoencoder(config)}")
    return 0


_TRAIN_DESCRIPTION = ("Stage 2: train the concept encoder and UNet jointly with the diffusion loss. "
                      "Defaults shown are the preset's (--preset) after its training.json and --config.")
_VAE_DESCRIPTION = ("Stage 1: train the preset's VQModel / AutoencoderKL; pass the result to `train --vae`. "
                    "Defaults shown are the preset's (--preset) after --config.")
