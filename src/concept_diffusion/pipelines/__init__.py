"""The package's `ConceptDiffusionPipeline`: the portable pipeline plus safe loading and a Hub push.

`pipeline_concept_diffusion.py` holds everything a pipeline does (encode, reconstruct, swap,
traverse, save) and imports only torch and diffusers, because `save_pretrained` copies it into Hub
repos as remote code. The subclass here adds what needs the package, from `concept_diffusion.hub`:
`from_pretrained` that never runs a folder's or repo's code and reads safetensors only, and
`push_to_hub` with a model card. Imports flow one way: models -> hub -> pipelines.
"""

from concept_diffusion.hub import load_pipeline_components, push_pipeline_to_hub
from concept_diffusion.pipelines import pipeline_concept_diffusion as portable
from concept_diffusion.pipelines.pipeline_concept_diffusion import ConceptDiffusionPipelineOutput, ConceptEditOutput, ConceptInversionOutput


class ConceptDiffusionPipeline(portable.ConceptDiffusionPipeline):
    __doc__ = portable.ConceptDiffusionPipeline.__doc__

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """Load from a local folder or a Hub repo id, always with the package's own classes.

        The folder's `pipeline.py` and `concept_encoder.py` are never executed; only safetensors
        weights are read (see `concept_diffusion.hub.loading`). Components passed as keyword
        arguments replace the saved ones (e.g. `scheduler=DDPMScheduler.from_config(...)`).
        Hub arguments: `revision`, `token`, `cache_dir`, `local_files_only`. diffusers' loader
        arguments go to each model: `torch_dtype`, `variant`, `low_cpu_mem_usage`, `device_map`.

        Example:
            >>> pipe = ConceptDiffusionPipeline.from_pretrained("user/encdiff-shapes3d", torch_dtype=torch.float16)
        """
        return cls(**load_pipeline_components(pretrained_model_name_or_path, **kwargs))

    def push_to_hub(self, repo_id: str, **kwargs) -> str:
        """Upload the portable layout, the weights and a model card in one commit; returns the commit URL.

        Keyword arguments are those of `concept_diffusion.hub.push_pipeline_to_hub` (`metrics`,
        `dataset`, `training_config`, `swap_grid`, `private`, `revision`, `token`, ...).
        """
        return push_pipeline_to_hub(self, repo_id, **kwargs)


__all__ = ["ConceptDiffusionPipeline", "ConceptDiffusionPipelineOutput", "ConceptEditOutput", "ConceptInversionOutput"]
