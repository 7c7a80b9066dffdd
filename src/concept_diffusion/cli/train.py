"""`concept-diffusion train` (stage 2, EncDiff) and `concept-diffusion train-vae` (stage 1).

Every field of the config dataclasses is a flag (`--max-steps 500`); `--config run.yaml` reads a
YAML/JSON file first. Under `accelerate launch` or `torchrun` the same command trains on many
processes.
"""

import argparse
import dataclasses
import typing


def _parse_bool(text: str) -> bool:
    values = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    if text.lower() not in values:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return values[text.lower()]


def _flag_type(annotation):
    """(argparse type, nargs) for a dataclass field annotation; Optional fields also take `none`."""
    if typing.get_origin(annotation) is typing.Union:  # Optional[X]
        inner, _ = _flag_type(next(arg for arg in typing.get_args(annotation) if arg is not type(None)))
        return (lambda text: None if text.lower() == "none" else inner(text)), None
    if typing.get_origin(annotation) in (list, typing.List):
        return str, "*"
    if annotation is bool:
        return _parse_bool, None
    return annotation, None


def add_config_flags(parser: argparse.ArgumentParser, config_class) -> None:
    """One `--field-name` flag per dataclass field, documented with the field's docstring."""
    from concept_diffusion.training.config import field_docs

    docs = field_docs(config_class)
    hints = typing.get_type_hints(config_class)
    parser.add_argument("--config", dest="config_file", help="YAML or JSON file of config fields (flags override it)")
    for field in dataclasses.fields(config_class):
        kind, nargs = _flag_type(hints[field.name])
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        parser.add_argument(f"--{field.name.replace('_', '-')}", dest=field.name, type=kind, nargs=nargs,
                            default=argparse.SUPPRESS, help=f"{docs.get(field.name, '')} (default: {default})")


def overrides_from(args, config_class) -> dict:
    """The fields given on the command line (absent flags leave the preset's and file's values)."""
    return {field.name: getattr(args, field.name) for field in dataclasses.fields(config_class) if hasattr(args, field.name)}


def register(subparsers) -> None:
    from concept_diffusion.training.config import AutoencoderTrainingConfig, TrainingConfig

    train = subparsers.add_parser("train", help="train EncDiff (concept encoder + UNet) on a data set",
                                  description="Stage 2: train the concept encoder and UNet jointly with the diffusion loss.")
    add_config_flags(train, TrainingConfig)
    train.set_defaults(func=run_train)
    vae = subparsers.add_parser("train-vae", help="train the first-stage autoencoder of a latent preset",
                                description="Stage 1: train the preset's VQModel / AutoencoderKL; pass the result to `train --vae`.")
    add_config_flags(vae, AutoencoderTrainingConfig)
    vae.set_defaults(func=run_train_vae)


def run_train(args) -> int:
    from concept_diffusion.training import TrainingConfig, build_config, train

    config = build_config(TrainingConfig, overrides_from(args, TrainingConfig), args.config_file)
    result = train(config)
    print(f"trained {result.step} steps ({result.images_seen} images) in {result.seconds / 60:.1f} min")
    print(f"pipeline: {result.pipeline_dir}")
    for name, value in result.metrics.items():
        print(f"  {name}: {value:.4f}")
    return 0


def run_train_vae(args) -> int:
    from concept_diffusion.training import AutoencoderTrainingConfig, build_config, train_autoencoder

    config = build_config(AutoencoderTrainingConfig, overrides_from(args, AutoencoderTrainingConfig), args.config_file)
    print(f"first stage: {train_autoencoder(config)}")
    return 0
