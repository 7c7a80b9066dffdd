"""Share pipelines and encoders on the Hugging Face Hub: push with a model card, pull, load.

- `push_pipeline_to_hub` / `push_encoder_to_hub` (what `pipe.push_to_hub` and
  `encoder.push_to_hub` call) and `push_folder_to_hub` (`concept-diffusion push`);
- `pull_pipeline` (`concept-diffusion pull`), `snapshot_pipeline` and `check_pipeline_repo`;
- `render_model_card`, the card from `model_cards/model_card.md`;
- `HubError`, raised when the Hub or the network refuses, with what to do.
"""

from concept_diffusion.hub.cards import render_model_card
from concept_diffusion.hub.errors import HubError
from concept_diffusion.hub.pull import check_pipeline_repo, pull_pipeline, snapshot_pipeline
from concept_diffusion.hub.push import push_encoder_to_hub, push_folder_to_hub, push_pipeline_to_hub

__all__ = [
    "HubError",
    "check_pipeline_repo",
    "pull_pipeline",
    "push_encoder_to_hub",
    "push_folder_to_hub",
    "push_pipeline_to_hub",
    "render_model_card",
    "snapshot_pipeline",
]
