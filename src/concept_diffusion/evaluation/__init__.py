"""Disentanglement metrics with disentanglement_lib's protocol and values, and `evaluate`.

Every `compute_*` function takes a ground-truth data object (`sample_factors`,
`sample_observations_from_factors`, `sample`, `num_factors`), a `representation_fn(observations)
-> array (n, d)`, a `numpy.random.RandomState` and disentanglement_lib's default hyperparameters,
and returns a dict with disentanglement_lib's keys. The `*_from_codes` functions take arrays.
DCI, MIG, SAP and modularity need only `sample` (random (factors, observations) pairs), so they
also score labelled images without a full factor grid (`concept_diffusion.data.LabelledImages`).
`evaluate` encodes each distinct image of a factor grid once (`evaluation.code_cache`).
"""

from concept_diffusion.evaluation.beta_vae import compute_beta_vae
from concept_diffusion.evaluation.dci import completeness, compute_dci, dci_from_codes, disentanglement
from concept_diffusion.evaluation.evaluate import METRICS, evaluate
from concept_diffusion.evaluation.factor_vae import compute_factor_vae
from concept_diffusion.evaluation.mig import compute_mig, mig_from_codes
from concept_diffusion.evaluation.modularity import (
    compute_modularity_explicitness,
    modularity_explicitness_from_codes,
)
from concept_diffusion.evaluation.sap import compute_sap, sap_from_codes

__all__ = [
    "METRICS",
    "completeness",
    "compute_beta_vae",
    "compute_dci",
    "compute_factor_vae",
    "compute_mig",
    "compute_modularity_explicitness",
    "compute_sap",
    "dci_from_codes",
    "disentanglement",
    "evaluate",
    "mig_from_codes",
    "modularity_explicitness_from_codes",
    "sap_from_codes",
]
