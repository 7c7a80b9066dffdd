"""Push pipelines, encoders and saved folders to the Hub: save locally, add the card, one commit.

Saving first means a failed upload never loses work: the complete local folder stays on disk and
the error names it. The upload is one `upload_folder` commit, so the repo never holds half a model;
files of an earlier push that the new save lacks are deleted in that same commit.
"""

import os
import shutil
import tempfile
from typing import Any, Mapping, Optional

from concept_diffusion import __version__
from concept_diffusion.atomic import write_text
from concept_diffusion.hub.cards import SWAP_GRID_FILE, render_model_card, write_swap_grid
from concept_diffusion.hub.errors import explained_hub_failures
from concept_diffusion.hub.loading import PIPELINE_CLASS, load_components

CARD_FILE = "README.md"


def write_card(card, folder: str) -> None:
    """Write `card` as the folder's README.md, atomically."""
    write_text(os.path.join(folder, CARD_FILE), str(card))


def _commit_message(kind: str, commit_message: Optional[str]) -> str:
    return commit_message or f"Upload {kind} with concept-diffusion {__version__}"


def upload_folder_as_commit(
    folder: str,
    repo_id: str,
    *,
    commit_message: str,
    private: Optional[bool] = None,
    revision: Optional[str] = None,
    token: Optional[str] = None,
    repo_type: str = "model",
) -> str:
    """Create the repo (and the branch `revision`) if needed and upload `folder` as one commit.

    Returns the commit's URL. Failures raise `HubError` saying that `folder` is intact.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    with explained_hub_failures("push to", repo_id, repo_type, local_folder=folder):
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        if revision not in (None, "main"):
            api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            repo_type=repo_type,
            folder_path=folder,
            revision=revision,
            commit_message=commit_message,
            # The repo mirrors the save: leftovers of an earlier push go in the same commit.
            delete_patterns=["*"],
        )
    return commit.commit_url


def _push_saved_model(
    model,
    repo_id: str,
    *,
    commit_message: Optional[str],
    private: Optional[bool],
    revision: Optional[str],
    token: Optional[str],
    save_directory: Optional[str],
    metrics: Optional[Mapping[str, Any]],
    dataset: Optional[str],
    training_config: Optional[Mapping[str, Any]],
    swap_grid,
) -> str:
    folder = os.path.abspath(os.fspath(save_directory)) if save_directory else tempfile.mkdtemp(prefix="concept-diffusion-push-")
    model.save_pretrained(folder)
    grid_file = write_swap_grid(swap_grid, folder) if swap_grid is not None else None
    card = render_model_card(
        model,
        repo_id,
        metrics=metrics,
        dataset=dataset,
        training_config=training_config,
        swap_grid=grid_file,
        revision=revision or "main",
    )
    write_card(card, folder)
    url = upload_folder_as_commit(
        folder, repo_id, commit_message=_commit_message(type(model).__name__, commit_message), private=private,
        revision=revision, token=token,
    )
    if not save_directory:
        shutil.rmtree(folder, ignore_errors=True)
    return url


def push_pipeline_to_hub(
    pipe,
    repo_id: str,
    *,
    commit_message: Optional[str] = None,
    private: Optional[bool] = None,
    revision: Optional[str] = None,
    token: Optional[str] = None,
    save_directory: Optional[str] = None,
    metrics: Optional[Mapping[str, Any]] = None,
    dataset: Optional[str] = None,
    training_config: Optional[Mapping[str, Any]] = None,
    swap_grid=None,
) -> str:
    """Upload a `ConceptDiffusionPipeline` with its model card, in one commit; returns the commit URL.

    The pipeline is first saved in the portable layout (`save_pretrained`: safetensors weights,
    `pipeline.py`, `concept_encoder/concept_encoder.py`) to `save_directory`, or to a temporary
    folder that is removed after a successful push. `metrics`, `dataset`, `training_config` and
    `swap_grid` (a PIL image such as `pipe.swap(...).grid`, or an image path) go into the card; see
    `render_model_card`. `revision` is a branch, created if missing.

    If the upload fails, `HubError` says why and where the complete local save is.

    Example:
        >>> pipe.push_to_hub("user/encdiff-shapes3d", metrics=scores, dataset="shapes3d-procedural",
        ...                  swap_grid=pipe.swap(images, references, concept_indices=[0]).grid)
    """
    return _push_saved_model(
        pipe, repo_id, commit_message=commit_message, private=private, revision=revision, token=token,
        save_directory=save_directory, metrics=metrics, dataset=dataset, training_config=training_config,
        swap_grid=swap_grid,
    )


def push_encoder_to_hub(
    encoder,
    repo_id: str,
    *,
    commit_message: Optional[str] = None,
    private: Optional[bool] = None,
    revision: Optional[str] = None,
    token: Optional[str] = None,
    save_directory: Optional[str] = None,
    metrics: Optional[Mapping[str, Any]] = None,
    dataset: Optional[str] = None,
    training_config: Optional[Mapping[str, Any]] = None,
) -> str:
    """Upload a `ConceptEncoder` (config, safetensors weights, its module) with a model card, in one commit.

    Same arguments and failure handling as `push_pipeline_to_hub`, without the swap grid.

    Example:
        >>> pipe.concept_encoder.push_to_hub("user/encdiff-shapes3d-encoder")
    """
    return _push_saved_model(
        encoder, repo_id, commit_message=commit_message, private=private, revision=revision, token=token,
        save_directory=save_directory, metrics=metrics, dataset=dataset, training_config=training_config,
        swap_grid=None,
    )


def push_folder_to_hub(
    folder: str,
    repo_id: str,
    *,
    commit_message: Optional[str] = None,
    private: Optional[bool] = None,
    revision: Optional[str] = None,
    token: Optional[str] = None,
) -> str:
    """Upload a folder written by `ConceptDiffusionPipeline.save_pretrained` (what `concept-diffusion push` does).

    The folder must load as a pipeline (it is checked with the package's own loader, which runs
    none of its code). Its README.md is used as the card if it has one; otherwise a card is
    rendered from the loaded components (with `swap_grid.png` if the folder holds one) and written
    into it.

    Example:
        >>> push_folder_to_hub("runs/shapes3d/pipeline", "user/encdiff-shapes3d")
    """
    folder = os.path.abspath(os.fspath(folder))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder} is not a folder: pass the folder written by pipe.save_pretrained(folder)")
    components = load_components(folder)
    if not os.path.isfile(os.path.join(folder, CARD_FILE)):
        grid_file = SWAP_GRID_FILE if os.path.isfile(os.path.join(folder, SWAP_GRID_FILE)) else None
        card = render_model_card(components, repo_id, swap_grid=grid_file, revision=revision or "main")
        write_card(card, folder)
    return upload_folder_as_commit(
        folder, repo_id, commit_message=_commit_message(PIPELINE_CLASS, commit_message), private=private,
        revision=revision, token=token,
    )
