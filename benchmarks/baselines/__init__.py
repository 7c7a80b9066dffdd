"""Baselines for the training-efficiency benchmark (not part of the package API): a beta-VAE and a
beta-TCVAE with EncDiff's encoder, trained on the same data in the same order and scored by the same
metrics. `benchmarks/train_efficiency.py` runs them beside EncDiff."""

from .models import DEFAULT_BETA, KINDS, GaussianVAE, VAELoss
from .train import BaselineResult, reconstruction_batch, reconstruction_mse, train_baseline

__all__ = ["GaussianVAE", "VAELoss", "KINDS", "DEFAULT_BETA", "train_baseline", "BaselineResult",
           "reconstruction_batch", "reconstruction_mse"]
