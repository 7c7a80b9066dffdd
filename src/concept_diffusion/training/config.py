"""Training configuration: plain dataclasses whose defaults work, overridable from a file and the CLI.

Each preset folder (`pipelines/<name>/`) may hold a `training.json` with that preset's tuned
defaults; a YAML/JSON file given with `--config` overrides them, and command-line flags override
both.
"""

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import List, Optional

from concept_diffusion.presets import preset_folder

TRAINING_FILE = "training.json"


def diffusers_alias(name: str) -> dict:
    """Field metadata giving a flag the spelling of diffusers' example scripts (read by `HfArgumentParser`)."""
    return {"aliases": [f"--{name}"]}


@dataclass
class AutoencoderTrainingConfig:
    """Stage 1: the first-stage autoencoder (the preset's `vae`, a diffusers `VQModel` or `AutoencoderKL`)."""

    preset: str = "shapes3d"
    """Preset name or folder whose `vae` config is trained."""
    data: str = "shapes3d-procedural"
    """Ground-truth data name, official file, `datasets` folder or Hub data set id."""
    output_dir: str = "outputs/vae"
    """Where the trained vae (diffusers format) is written."""
    seed: int = 0
    """Seeds weights, data order and noise."""
    max_steps: Optional[int] = field(default=2000, metadata=diffusers_alias("max_train_steps"))
    """Optimizer steps; None to stop on time only."""
    max_minutes: Optional[float] = None
    """Stop after this many minutes of training (checked every step)."""
    batch_size: int = field(default=64, metadata=diffusers_alias("train_batch_size"))
    """Images per micro-batch and process."""
    gradient_accumulation_steps: int = 1
    """Micro-batches per optimizer step (accelerate)."""
    learning_rate: float = 4.5e-4
    """AdamW learning rate (constant after warm-up)."""
    lr_warmup_steps: int = 100
    """Linear warm-up steps."""
    reconstruction_loss: str = "l1"
    """"l1" or "l2" pixel reconstruction loss."""
    regularization_weight: float = 1.0
    """Weight of the codebook loss (VQModel) or of the KL term (AutoencoderKL, scaled by 1e-6)."""
    discriminator_weight: float = 0.75
    """Scale of the adaptive weight of the patch discriminator's loss (the released disc_weight); 0 turns it off."""
    discriminator_start: int = 0
    """Step from which the adversarial loss counts (the released disc_start is 0)."""
    codebook_init: str = "uniform"
    """How a VQModel's codebook starts: "uniform" in +-1/num_codes (diffusers and the released code), or "data":
    each code is one of the untrained encoder's latent vectors on the first batches, so the decoder sees
    informative codes from the first step and the first stage trains in minutes instead of thousands of steps
    (a deviation from the released first stage; the paper presets keep "uniform")."""
    max_grad_norm: float = 1.0
    """Gradient clipping."""
    mixed_precision: Optional[str] = None
    """"no", "fp16" or "bf16"; None (default) takes `accelerate launch --mixed_precision` or accelerate's config file."""
    allow_tf32: bool = True
    """On NVIDIA GPUs (Ampere and newer), run float32 matmuls and convolutions in TF32. No effect on CPU."""
    num_workers: int = 0
    """DataLoader workers."""
    checkpoint_every: int = field(default=500, metadata=diffusers_alias("checkpointing_steps"))
    """Steps between checkpoints (0: only at the end)."""
    checkpoints_total_limit: int = 2
    """Checkpoints kept; older ones are deleted."""
    resume: Optional[str] = field(default=None, metadata=diffusers_alias("resume_from_checkpoint"))
    """"latest" or a checkpoint folder to continue from."""
    report_to: str = "tensorboard"
    """accelerate tracker ("tensorboard", "wandb", "all" or "none"); a JSONL log is always written."""
    log_every: int = 20
    """Steps between log records."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TrainingConfig:
    """Stage 2: EncDiff, the concept encoder and UNet trained jointly with the diffusion loss only."""

    preset: str = "cpu"
    """Preset name or folder: the architecture (and the starting noise schedule)."""
    data: str = "shapes3d-procedural"
    """Ground-truth data name, official file, `datasets` folder or Hub data set id."""
    vae: Optional[str] = None
    """Folder of a trained first stage (stage 1's output); required when the preset has a vae."""
    output_dir: str = "outputs/train"
    """Run folder: checkpoints/, logs, samples/ and the final pipeline/."""
    seed: int = 0
    """Seeds weights, data order, timesteps and noise (exactly reproducible on CPU)."""
    max_steps: Optional[int] = field(default=2000, metadata=diffusers_alias("max_train_steps"))
    """Optimizer steps; None to stop on time only."""
    max_minutes: Optional[float] = None
    """Stop after this many minutes of training (checked every step)."""
    batch_size: int = field(default=64, metadata=diffusers_alias("train_batch_size"))
    """Images per optimizer step and process (before gradient accumulation)."""
    gradient_accumulation_steps: int = 1
    """Micro-batches per optimizer step (accelerate)."""
    learning_rate: float = 2.56e-4
    """AdamW learning rate after warm-up (the released code: 2.56e-4 at batch 128)."""
    lr_warmup_steps: int = 500
    """Linear warm-up steps, then constant (until `lr_decay_start`)."""
    lr_decay_start: float = 1.0
    """From this fraction of the run on (steps over max_steps or time over max_minutes, whichever is further), the
    learning rate falls along a half cosine to 0 at the end; 1 (default) keeps it constant."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping of encoder and UNet together."""
    loss: str = "l1"
    """"l1" (released code) or "l2" (paper) between predicted and true noise."""
    prediction_type: Optional[str] = None
    """What the UNet predicts: "epsilon" (the paper), "v_prediction" or "sample" (the clean image);
    None keeps the preset scheduler's. Saved in the pipeline's scheduler config, so sampling matches."""
    timestep_sampling: str = "uniform"
    """"uniform" over the training timesteps, or "logit_normal": t/T = sigmoid(mean + std * N(0, 1)),
    which with a positive mean spends more steps at high noise, where the UNet must read the tokens."""
    timestep_logit_mean: float = 0.0
    """Mean of the logit-normal timestep distribution."""
    timestep_logit_std: float = 1.0
    """Standard deviation of the logit-normal timestep distribution."""
    snr_gamma: Optional[float] = None
    """Min-SNR-gamma loss weighting (Hang et al. 2023); None for uniform weights."""
    conditioning: str = "cross_attention"
    """How the concept tokens enter the UNet: "cross_attention" (EncDiff) or "adagn", the paper's control, where the
    flattened tokens are added to the time embedding that the ResBlocks apply with scale and shift
    (`models.conditioning`); the saved UNet's config records it."""
    token_mode: Optional[str] = None
    """How the concept encoder turns concepts into tokens, replacing the preset's: "scalar" (the paper: each concept a
    number), "angle" (each concept a point on a circle, so that one concept holds a cyclic factor such as a hue, which
    a number holds only folded over two concepts; `ConceptEncoder`). None (default): the preset's. Not with
    `init_from`, whose encoder is kept."""
    skip_dropout: float = 0.0
    """Skip Dropout (Jun et al., WACV 2025): drop each channel of the UNet's skip connections with this probability
    during training (0 = off; their configs use 0.2), so that the decoder must read the tokens instead of copying
    detail from its noisy input. No effect at inference."""
    encoder_lr_multiplier: float = 1.0
    """The concept encoder's learning rate is learning_rate times this (the UNet's is learning_rate)."""
    edge_loss_weight: float = 0.0
    """Weight the loss toward edges (0 = off): each position's error is scaled by (1 + w * edge / mean edge) / (1 + w),
    edge being the clean target's gradient magnitude (`edge_weights`), so outlines (the object's scale, shape and
    orientation) cost as much as the large flat hues. The mean weight stays 1. Not in the released code; the `cpu`
    preset uses 10, with `timestep_logit_mean` 2 and `gradient_loss_weight` 100 (benchmarks/RESULTS.md, "Object factors")."""
    gradient_loss_weight: float = 0.0
    """Add this weight times a loss on the error's intensity gradient (0 = off; `trainer.intensity_gradient_error`):
    the horizontal and vertical steps of the channel mean of prediction - target, squared (absolute with `loss` "l1").
    Hues at fixed saturation and value hardly move the channel mean, outlines and shading edges do, so the term pays
    the object's scale and shape and the camera's orientation more than the hues. Not in the released code; the `cpu`
    preset uses 100, where the term starts at about 1.5x the edge-weighted loss (benchmarks/RESULTS.md, "Object factors")."""
    gradient_loss_weight_start: Optional[float] = None
    """With a value, `gradient_loss_weight` is scheduled: it starts at this weight and moves linearly to
    `gradient_loss_weight` at `gradient_loss_weight_until` of the run (steps over max_steps or time over max_minutes),
    then stays there. None (default): constant."""
    gradient_loss_weight_until: float = 0.5
    """The fraction of the run at which a scheduled `gradient_loss_weight` (see `gradient_loss_weight_start`) arrives."""
    multires_noise_discount: float = 0.0
    """Multi-resolution noise (0 = off, plain Gaussian noise): add Gaussian noise drawn at 1/2, 1/4, ... of the image
    size, upsampled and weighted discount ** level (`trainer.training_noise`), so that the noise hides the large-scale
    layout (the camera's turn, the object's place) as it hides fine detail, and the UNet must take it from the tokens.
    In [0, 1); Whitaker (2023) used 0.8 with a random scale step. Training only: sampling starts from plain noise."""
    init_from: Optional[str] = None
    """A saved pipeline folder (a run's OUTPUT_DIR/pipeline, or any `save_pretrained` folder) whose concept encoder, UNet
    and first stage start this run instead of the preset's fresh weights: a second phase. The preset still gives the
    recipe; the folder's architecture replaces the preset's. None (default): train from scratch."""
    train_encoder: bool = True
    """False freezes the concept encoder (eval mode, no gradient, not in the optimizer): with `init_from`, a phase that
    trains the UNet alone, e.g. on every timestep (`timestep_sampling` uniform) for cleaner decoding, while the
    concepts, and so the disentanglement scores, stay exactly as they were."""
    held_out: Optional[str] = None
    """Leave a block of factor combinations out of the training images (data with a factor grid only), to ask later
    whether the model makes combinations it never saw: `FACTOR=VALUES[;FACTOR=VALUES...]`, values by name or index,
    e.g. "shape=sphere;floor_hue=0,1,9" (every sphere on the three reddest floors). The metrics still draw from the
    whole grid. None (default): train on every image."""
    released_zero_init: bool = False
    """Zero-initialise the UNet like the released code (each ResBlock's output conv, each transformer's
    proj_out, the final conv) before training; the paper presets turn it on."""
    ema_decay: float = 0.9999
    """Decay of the UNet's exponential moving average (the released code's value)."""
    ema_warmup: bool = True
    """Ramp the EMA decay up from 0 (diffusers' EMA warm-up), so that short runs get a useful EMA."""
    ema_encoder: bool = False
    """Also keep an EMA of the concept encoder."""
    latent_scale_batches: int = 4
    """Batches used to estimate the latents' std; the vae's scaling_factor becomes 1/std."""
    mixed_precision: Optional[str] = None
    """"no", "fp16" or "bf16"; None (default) takes `accelerate launch --mixed_precision` or accelerate's config file."""
    allow_tf32: bool = True
    """On NVIDIA GPUs (Ampere and newer), run float32 matmuls and convolutions in TF32: several times faster,
    with a 10-bit mantissa in the products. No effect on CPU."""
    num_workers: int = 0
    """DataLoader workers rendering or reading batches."""
    eval_every: int = 500
    """Steps between metric evaluations and swap grids (0: only at the end)."""
    eval_metrics: List[str] = field(default_factory=lambda: ["factor_vae", "dci"])
    """Metrics computed during training (fast mode) when the data has factors; each evaluation also logs how well
    the concepts predict each factor (`factor_accuracy.<factor>`). An empty list turns evaluations off."""
    eval_samples: int = 2000
    """Training points of each metric during training (evaluation points are half)."""
    eval_final: bool = True
    """Score the final model with `eval_metrics` (fast mode) before saving it; the quickstart turns this off
    and scores with larger sizes itself."""
    sample_steps: int = 20
    """DDIM steps for the swap grids."""
    checkpoint_every: int = field(default=500, metadata=diffusers_alias("checkpointing_steps"))
    """Steps between checkpoints (0: only at the end)."""
    checkpoints_total_limit: int = 2
    """Checkpoints kept; older ones are deleted."""
    resume: Optional[str] = field(default=None, metadata=diffusers_alias("resume_from_checkpoint"))
    """"latest" or a checkpoint folder to continue from."""
    report_to: str = "tensorboard"
    """accelerate tracker ("tensorboard", "wandb", "all" or "none"); a JSONL log is always written."""
    log_every: int = 10
    """Steps between log records."""
    push_to_hub: Optional[str] = None
    """Repo id to push the final pipeline to. On the command line also `--push_to_hub --hub_model_id REPO`
    (diffusers' spelling), or a bare `--push_to_hub` for a repo named after output_dir."""
    compile: bool = False
    """torch.compile the concept encoder and the UNet for training; the saved pipeline holds the plain models.
    On one GPU without gradient accumulation in mode "reduce-overhead": CUDA graphs replay each forward and
    backward with one launch, so the host no longer sets the pace. Elsewhere in the default mode. The first
    steps compile (about 2 minutes for the `tiny` or the `cpu` preset on 2 CPU cores); it pays in long runs."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def field_docs(config_class) -> dict:
    """{field name: its docstring} read from the class source, for `--help`."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(config_class))
    body = tree.body[0].body
    docs = {}
    for node, following in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
            docs[node.target.id] = following.value.value
    return docs


def read_config_file(path: str) -> dict:
    """Read a YAML or JSON mapping of config fields."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path} does not exist")
    with open(path) as file:
        text = file.read()
    if path.endswith((".yaml", ".yml")):
        import yaml

        values = yaml.safe_load(text)
    else:
        values = json.loads(text)
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must hold a mapping of field names to values, got {type(values).__name__}")
    return values


def build_config(config_class, overrides: Optional[dict] = None, config_file: Optional[str] = None):
    """Defaults < the preset's training.json < `config_file` < `overrides` (e.g. CLI flags).

    Example:
        >>> build_config(TrainingConfig, {"preset": "tiny", "max_steps": 10}).max_steps
        10
    """
    overrides = dict(overrides or {})
    from_file = read_config_file(config_file) if config_file else {}
    preset = overrides.get("preset", from_file.get("preset", config_class.preset))
    values = {}
    preset_file = os.path.join(preset_folder(preset), TRAINING_FILE)
    if config_class is TrainingConfig and os.path.isfile(preset_file):
        values.update(read_config_file(preset_file))
    values.update(from_file)
    values.update(overrides)
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {config_class.__name__} field(s) {unknown}: known fields are {sorted(known)}")
    config = config_class(**values)
    check_config(config)
    return config


def check_config(config) -> None:
    """Raise a ValueError naming the field for values that cannot work."""
    positive = ["batch_size", "learning_rate", "gradient_accumulation_steps", "log_every"]
    if config.max_steps is None and config.max_minutes is None:
        raise ValueError("set max_steps or max_minutes (or both): training needs a stopping point")
    if isinstance(config, TrainingConfig):
        positive += ["latent_scale_batches", "sample_steps", "eval_samples"]
        if config.prediction_type not in (None, "epsilon", "v_prediction", "sample"):
            raise ValueError(f"prediction_type must be 'epsilon', 'v_prediction' or 'sample', got {config.prediction_type!r}")
        if config.timestep_sampling not in ("uniform", "logit_normal"):
            raise ValueError(f"timestep_sampling must be 'uniform' or 'logit_normal', got {config.timestep_sampling!r}")
        if config.loss not in ("l1", "l2"):
            raise ValueError(f"loss must be 'l1' or 'l2', got {config.loss!r}")
        if config.token_mode not in (None, "scalar", "angle"):
            raise ValueError(f"token_mode must be 'scalar' or 'angle' (or None for the preset's), got {config.token_mode!r}")
        if config.conditioning not in ("cross_attention", "adagn"):
            raise ValueError(f"conditioning must be 'cross_attention' or 'adagn', got {config.conditioning!r}")
        if not 0 <= config.skip_dropout < 1:
            raise ValueError(f"skip_dropout must be in [0, 1) (0 turns it off), got {config.skip_dropout}")
        if not config.encoder_lr_multiplier > 0:
            raise ValueError(f"encoder_lr_multiplier must be positive, got {config.encoder_lr_multiplier}")
        if not config.edge_loss_weight >= 0:
            raise ValueError(f"edge_loss_weight must be 0 (off) or positive, got {config.edge_loss_weight}")
        if not config.gradient_loss_weight >= 0:
            raise ValueError(f"gradient_loss_weight must be 0 (off) or positive, got {config.gradient_loss_weight}")
        if config.gradient_loss_weight_start is not None and not config.gradient_loss_weight_start >= 0:
            raise ValueError(f"gradient_loss_weight_start must be None (no schedule), 0 or positive, got {config.gradient_loss_weight_start}")
        if not 0 < config.gradient_loss_weight_until <= 1:
            raise ValueError(f"gradient_loss_weight_until must be a fraction of the run in (0, 1], got {config.gradient_loss_weight_until}")
        if not 0 <= config.lr_decay_start <= 1:
            raise ValueError(f"lr_decay_start must be a fraction of the run in [0, 1] (1: no decay), got {config.lr_decay_start}")
        if not 0 <= config.multires_noise_discount < 1:
            raise ValueError(
                f"multires_noise_discount must be in [0, 1) (0 turns it off; 0.8 is the usual strength), got {config.multires_noise_discount}"
            )
        if not config.train_encoder and config.ema_encoder:
            raise ValueError("ema_encoder needs train_encoder: a frozen concept encoder has nothing to average; drop one of them")
        if config.init_from is not None and config.token_mode is not None:
            raise ValueError("token_mode builds a fresh encoder and init_from keeps the saved one: drop one of them")
        if config.init_from is not None and not os.path.isfile(os.path.join(config.init_from, "model_index.json")):
            raise ValueError(f"init_from={config.init_from}: no model_index.json there; pass a folder written by "
                             "save_pretrained, such as a run's OUTPUT_DIR/pipeline")
        if not 0 <= config.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {config.ema_decay}")
    else:
        if config.reconstruction_loss not in ("l1", "l2"):
            raise ValueError(f"reconstruction_loss must be 'l1' or 'l2', got {config.reconstruction_loss!r}")
        if config.codebook_init not in ("uniform", "data"):
            raise ValueError(f"codebook_init must be 'uniform' or 'data', got {config.codebook_init!r}")
    for name in positive:
        if not getattr(config, name) > 0:
            raise ValueError(f"{name} must be positive, got {getattr(config, name)}")
    if config.mixed_precision not in (None, "no", "fp16", "bf16"):
        raise ValueError(f"mixed_precision must be None (accelerate's setting), 'no', 'fp16' or 'bf16', got {config.mixed_precision!r}")
