"""Share pipelines and encoders on the Hugging Face Hub, and load them safely.

- `push_pipeline_to_hub` (what `pipe.push_to_hub` calls), `push_encoder_to_hub` and
  `push_folder_to_hub` (`concept-diffusion push`): save, add a model card, upload in one commit;
- `pull_pipeline` (`concept-diffusion pull`), `snapshot_pipeline` and `check_pipeline_repo`;
- `load_pipeline_components` (what `ConceptDiffusionPipeline.from_pretrained` calls) and
  `component_classes`, the one reader of model_index.json (see `loading`);
- `render_model_card`, the card from `model_cards/model_card.md`;
- `HubError`, raised when the Hub or the network refuses, with what to do.

Imports flow one way: models -> hub -> pipelines. Nothing here imports the pipeline classes; the
package's `ConceptDiffusionPipeline` (in `concept_diffusion.pipelines`) calls in here.
"""

from concept_diffusion.hub.cards import render_model_card
from concept_diffusion.hub.errors import HubError
from concept_diffusion.hub.loading import component_classes, load_components, read_model_index
from concept_diffusion.hub.pull import check_pipeline_repo, load_pipeline_components, pull_pipeline, snapshot_pipeline
from concept_diffusion.hub.push import push_encoder_to_hub, push_folder_to_hub, push_pipeline_to_hub

__all__ = [
    "HubError",
    "check_pipeline_repo",
    "component_classes",
    "load_components",
    "load_pipeline_components",
    "pull_pipeline",
    "push_encoder_to_hub",
    "push_folder_to_hub",
    "push_pipeline_to_hub",
    "read_model_index",
    "render_model_card",
    "snapshot_pipeline",
]
