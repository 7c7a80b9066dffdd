"""concept-diffusion: EncDiff concept tokens as diffusers models and pipelines.

Heavy modules (torch, diffusers, datasets) are imported on first use, so that
`concept-diffusion --help` and `import concept_diffusion` stay fast.
"""

from importlib import import_module, metadata

# One version, pyproject.toml's, read from the installed distribution's metadata.
__version__ = metadata.version("concept-diffusion")

_EXPORTS = {
    "ConceptEncoder": "concept_diffusion.models.concept_encoder",
    "ConceptEncoderOutput": "concept_diffusion.models.concept_encoder",
    "ConceptPrior": "concept_diffusion.models.concept_prior",
    "ConceptDiffusionPipeline": "concept_diffusion.pipelines",
    "ConceptDiffusionPipelineOutput": "concept_diffusion.pipelines",
    "ConceptEditOutput": "concept_diffusion.pipelines",
    "ConceptInversionOutput": "concept_diffusion.pipelines",
    "build_pipeline": "concept_diffusion.presets",
    "list_presets": "concept_diffusion.presets",
    "load_ground_truth": "concept_diffusion.data",
    "to_hf_dataset": "concept_diffusion.data",
    "evaluate": "concept_diffusion.evaluation",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'concept_diffusion' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
