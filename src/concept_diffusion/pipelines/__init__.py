from .pipeline_concept_diffusion import ConceptDiffusionPipeline, ConceptDiffusionPipelineOutput, ConceptEditOutput

__all__ = ["ConceptDiffusionPipeline", "ConceptDiffusionPipelineOutput", "ConceptEditOutput"]
