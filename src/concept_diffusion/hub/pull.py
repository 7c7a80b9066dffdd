"""Download a pipeline repo, after checking that it is one concept-diffusion can load safely.

The checks run on the repo's file list and model_index.json before any weights are fetched, so a
wrong repo id, a repo of another library or a repo with pickled weights only fails at once with a
message that says so, instead of after a download or deep inside a loader.
"""

import json
import os
from typing import Optional

from concept_diffusion.hub.errors import explained_hub_failures

PICKLED_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def check_pipeline_repo(repo_id: str, *, revision: Optional[str] = None, token: Optional[str] = None) -> None:
    """Raise ValueError unless `repo_id` holds a ConceptDiffusionPipeline with safetensors weights.

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
    class_name = index.get("_class_name")
    class_name = class_name[-1] if isinstance(class_name, (list, tuple)) else class_name
    if class_name != "ConceptDiffusionPipeline":
        raise ValueError(
            f"{repo_id} holds a {class_name!r} pipeline, not a ConceptDiffusionPipeline: load it with "
            "diffusers.DiffusionPipeline.from_pretrained, or check the repo id"
        )
    for component, entry in index.items():
        if component.startswith("_") or not isinstance(entry, (list, tuple)) or entry[1] is None:
            continue
        component_files = [f for f in files if f.startswith(component + "/")]
        if any(f.endswith(".safetensors") for f in component_files) or component == "scheduler":
            continue
        pickled = sorted(f for f in component_files if f.endswith(PICKLED_WEIGHTS))
        if pickled:
            raise ValueError(
                f"{repo_id}: the {component} has pickled weights only ({', '.join(pickled)}). concept-diffusion loads "
                "safetensors only, because unpickling runs arbitrary code. Ask the repo's owner for safetensors, or "
                "convert them yourself from a copy you trust (load, then save_pretrained) and push that"
            )
        raise ValueError(f"{repo_id}: the {component} has no weights (expected {component}/*.safetensors)")


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

    from concept_diffusion.pipelines.pipeline_concept_diffusion import HUB_ALLOW_PATTERNS

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
