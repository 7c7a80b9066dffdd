"""Download a pipeline repo, after checking that it is one concept-diffusion can load safely.

The checks run on the repo's file list and model_index.json before any weights are fetched, so a
wrong repo id, a repo of another library or a repo with pickled weights only fails at once with a
message that says so, instead of after a download or deep inside a loader.
"""

import json
import os
from typing import Optional

from concept_diffusion.hub.errors import explained_hub_failures
from concept_diffusion.hub.loading import (
    HUB_ALLOW_PATTERNS,
    HUB_ARGS,
    MODEL_LOADER_ARGS,
    REPO_ID_PATTERN,
    REQUIRED_COMPONENTS,
    check_weights,
    component_classes,
    load_components,
)


def check_pipeline_repo(repo_id: str, *, revision: Optional[str] = None, token: Optional[str] = None) -> None:
    """Raise ValueError unless `repo_id` holds a ConceptDiffusionPipeline with safetensors weights.

    The same checks as for a local folder (`concept_diffusion.hub.loading`), made on the repo's
    file list and model_index.json before anything else is downloaded.

    Example:
        >>> check_pipeline_repo("user/encdiff-shapes3d")   # returns None, or raises with the reason
    """
    from huggingface_hub import HfApi, hf_hub_download

    with explained_hub_failures("pull", repo_id):
        files = [sibling.rfilename for sibling in HfApi(token=token).model_info(repo_id, revision=revision).siblings]
        if "model_index.json" not in files:
            shown = ", ".join(sorted(files)[:8]) or "no files"
            raise ValueError(
                f"{repo_id} is not a diffusers pipeline: it has no model_index.json (it holds {shown}). "
                "concept-diffusion loads repos made with ConceptDiffusionPipeline.push_to_hub; check the repo id"
            )
        with open(hf_hub_download(repo_id, "model_index.json", revision=revision, token=token)) as file:
            index = json.load(file)
    for component, component_class in component_classes(index, repo_id).items():
        if component_class is not None and component != "scheduler":
            check_weights([f for f in files if f.startswith(component + "/")], component, repo_id)


def snapshot_pipeline(
    repo_id: str,
    *,
    revision: Optional[str] = None,
    token: Optional[str] = None,
    cache_dir: Optional[str] = None,
    local_dir: Optional[str] = None,
    local_files_only: bool = False,
) -> str:
    """Check `repo_id` (see `check_pipeline_repo`), then download what loading needs; returns the folder.

    Only configs, safetensors weights, code files, the card and images are fetched, never pickles.
    Offline (`HF_HUB_OFFLINE=1` or `local_files_only=True`) the checks are skipped and the cached
    snapshot is returned.

    Example:
        >>> folder = snapshot_pipeline("user/encdiff-shapes3d", revision="main")
    """
    from huggingface_hub import constants, snapshot_download

    offline = local_files_only or constants.HF_HUB_OFFLINE
    if not offline:
        check_pipeline_repo(repo_id, revision=revision, token=token)
    with explained_hub_failures("pull", repo_id):
        return snapshot_download(
            repo_id,
            revision=revision,
            token=token,
            cache_dir=cache_dir,
            local_dir=local_dir,
            local_files_only=offline,
            allow_patterns=HUB_ALLOW_PATTERNS,
        )


def pull_pipeline(repo_id: str, out: str, *, revision: Optional[str] = None, token: Optional[str] = None) -> str:
    """Download the pipeline `repo_id` into the folder `out` (what `concept-diffusion pull` does).

    The folder then loads with `ConceptDiffusionPipeline.from_pretrained(out)`, or without the
    package with `DiffusionPipeline.from_pretrained(out, trust_remote_code=True)`.

    Example:
        >>> pull_pipeline("user/encdiff-shapes3d", "models/encdiff-shapes3d")
    """
    out = os.path.abspath(os.fspath(out))
    if os.path.isfile(out):
        raise ValueError(f"--out {out} is a file: pass a folder (it is created if missing)")
    return snapshot_pipeline(repo_id, revision=revision, token=token, local_dir=out)


def resolve_folder(path: str, **hub_args) -> str:
    """A local folder as it is; a Hub repo id checked (`check_pipeline_repo`) and downloaded (safe files only)."""
    expanded = os.path.expanduser(path)
    if os.path.isdir(expanded):
        return expanded
    if not REPO_ID_PATTERN.fullmatch(path):
        raise FileNotFoundError(
            f"{path} is not a folder, and not a Hub repo id of the form 'user/name': pass the folder written by "
            "save_pretrained, or a repo id"
        )
    return snapshot_pipeline(path, **hub_args)


def load_pipeline_components(pretrained_model_name_or_path, **kwargs) -> dict:
    """What `ConceptDiffusionPipeline.from_pretrained` builds the pipeline from: a folder or repo id,
    Hub arguments (`revision`, `token`, `cache_dir`, `local_files_only`), loader arguments
    (`torch_dtype`, `variant`, `low_cpu_mem_usage`, `device_map`) and components to use instead of
    the saved ones (`scheduler=...`)."""
    hub_args = {key: kwargs.pop(key) for key in HUB_ARGS if key in kwargs}
    loader_args = {key: kwargs.pop(key) for key in MODEL_LOADER_ARGS if key in kwargs}
    given = {name: kwargs.pop(name) for name in (*REQUIRED_COMPONENTS, "vae", "concept_prior") if name in kwargs}
    if kwargs:
        raise ValueError(
            f"unexpected arguments to from_pretrained: {sorted(kwargs)}; accepted are {list(HUB_ARGS + MODEL_LOADER_ARGS)} "
            f"and the components {list(REQUIRED_COMPONENTS) + ['vae', 'concept_prior']}"
        )
    folder = resolve_folder(os.fspath(pretrained_model_name_or_path), **hub_args)
    return {**load_components(folder, skip=tuple(given), **loader_args), **given}

