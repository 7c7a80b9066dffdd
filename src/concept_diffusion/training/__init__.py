"""Training on accelerate: stage 1 (the first-stage autoencoder) and stage 2 (EncDiff)."""

from .autoencoder import train_autoencoder
from .config import AutoencoderTrainingConfig, TrainingConfig, build_config
from .runtime import TrainingDiverged
from .trainer import TrainingResult, train

__all__ = ["AutoencoderTrainingConfig", "TrainingConfig", "TrainingDiverged", "TrainingResult", "build_config",
           "train", "train_autoencoder"]
