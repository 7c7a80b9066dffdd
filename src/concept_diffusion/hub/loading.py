"""Safe loading: the one reader of model_index.json, and weights from safetensors only.

`component_classes` is the single map from a pipeline's model_index.json to the classes that build
its components. `ConceptDiffusionPipeline.from_pretrained` (local folders and Hub repos),
`build_pipeline` (presets) and `check_pipeline_repo` (before a download) all go through it, so a
class that one of them accepts, all of them accept. None of it runs code from a folder or a repo,
and weights are read from safetensors only: unpickling runs arbitrary code.
"""

import json
import os
import re
from typing import Dict, Iterable, Optional

PIPELINE_CLASS = "ConceptDiffusionPipeline"
REQUIRED_COMPONENTS = ("concept_encoder", "unet", "scheduler")
VAE_CLASSES = ("VQModel", "AutoencoderKL")
# Weight files that would be unpickled; a folder or repo offering only these is refused.
REFUSED_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# What is downloaded from a Hub repo: configs, safetensors, code (never run), the card and images.
HUB_ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.py", "*.md", "*.png", "*.txt"]
REPO_ID_PATTERN = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
# diffusers' loader arguments that each model's from_pretrained takes as they are.
MODEL_LOADER_ARGS = ("torch_dtype", "variant", "low_cpu_mem_usage", "device_map")
HUB_ARGS = ("revision", "token", "cache_dir", "local_files_only")


def read_model_index(folder: str) -> dict:
    """model_index.json of `folder`, checked to describe a ConceptDiffusionPipeline."""
    index_path = os.path.join(folder, "model_index.json")
    if not os.path.isfile(index_path):
        raise FileNotFoundError(
            f"{folder} is not a diffusers pipeline: it has no model_index.json. Pass the folder written by "
            "ConceptDiffusionPipeline.save_pretrained (or build one with concept_diffusion.build_pipeline)"
        )
    with open(index_path) as file:
        index = json.load(file)
    check_model_index(index, folder)
    return index


def check_model_index(index: dict, where: str) -> None:
    """Raise ValueError unless `index` (a parsed model_index.json from `where`) names a ConceptDiffusionPipeline."""
    class_name = index.get("_class_name")
    if isinstance(class_name, (list, tuple)):
        class_name = class_name[-1]
    if class_name != PIPELINE_CLASS:
        raise ValueError(
            f"{where} holds a {class_name!r} pipeline, not a {PIPELINE_CLASS}: load it with "
            "diffusers.DiffusionPipeline.from_pretrained instead, or check the path or repo id"
        )
    missing = [name for name in REQUIRED_COMPONENTS if not isinstance(index.get(name), (list, tuple)) or index[name][1] is None]
    if missing:
        raise ValueError(f"{where}/model_index.json lacks the component(s) {missing}: a {PIPELINE_CLASS} needs {list(REQUIRED_COMPONENTS)}")


def component_classes(index: dict, where: str) -> Dict[str, Optional[type]]:
    """The class of each component that model_index.json names (None for an absent optional one).

    Only the package's `ConceptEncoder` and `ConceptPrior`, diffusers' `UNet2DConditionModel`, a `VQModel` or
    `AutoencoderKL` first stage and diffusers schedulers are accepted: whatever the file says, no
    class is imported from the folder or the repo.

    Example:
        >>> component_classes(read_model_index(folder), folder)["unet"]
        <class 'diffusers.models.unets.unet_2d_condition.UNet2DConditionModel'>
    """
    import diffusers

    from concept_diffusion.models import ConceptEncoder, ConceptPrior

    check_model_index(index, where)
    classes = {}
    for name, entry in index.items():
        if name.startswith("_"):
            continue
        class_name = entry[1] if isinstance(entry, (list, tuple)) and len(entry) == 2 else None
        if class_name is None:
            classes[name] = None
        elif name == "concept_encoder" and class_name == ConceptEncoder.__name__:
            classes[name] = ConceptEncoder
        elif name == "concept_prior" and class_name == ConceptPrior.__name__:
            classes[name] = ConceptPrior
        elif name == "unet" and class_name == "UNet2DConditionModel":
            classes[name] = diffusers.UNet2DConditionModel
        elif name == "vae" and class_name in VAE_CLASSES:
            classes[name] = getattr(diffusers, class_name)
        elif name == "scheduler" and isinstance(getattr(diffusers, class_name, None), type) and issubclass(
            getattr(diffusers, class_name), diffusers.SchedulerMixin
        ):
            classes[name] = getattr(diffusers, class_name)
        else:
            raise ValueError(f"{where}: component {name!r} has class {class_name!r}, which a {PIPELINE_CLASS} cannot use")
    return classes


def check_weights(files: Iterable[str], component: str, where: str) -> None:
    """Raise unless `files` (the file names of one component) include safetensors weights.

    Example:
        >>> check_weights(os.listdir(folder + "/unet"), "unet", folder)
    """
    files = sorted(files)
    if any(file.endswith(".safetensors") for file in files):
        return
    pickled = [file for file in files if file.endswith(REFUSED_WEIGHT_SUFFIXES)]
    if pickled:
        raise ValueError(
            f"{where}: the {component} has pickled weights only ({', '.join(pickled)}). concept-diffusion loads "
            "safetensors only, because unpickling runs arbitrary code. Convert them from a copy you trust "
            "(load it yourself, then save_pretrained) or ask the owner for safetensors"
        )
    raise FileNotFoundError(f"{where}: the {component} has no weights (expected {component}/*.safetensors)")


def load_components(folder: str, skip: Iterable[str] = (), **loader_args) -> dict:
    """Load the components of the saved pipeline `folder` (all but `skip`) with the package's own classes.

    `loader_args` are diffusers' model loader arguments (`torch_dtype`, `variant`,
    `low_cpu_mem_usage`, `device_map`), passed to each model's `from_pretrained`.

    Example:
        >>> components = load_components("runs/shapes3d/pipeline", torch_dtype=torch.float16)
    """
    unknown = sorted(set(loader_args) - set(MODEL_LOADER_ARGS))
    if unknown:
        raise ValueError(f"unexpected loader arguments {unknown}: accepted are {list(MODEL_LOADER_ARGS)}")
    components = {}
    for name, component_class in component_classes(read_model_index(folder), folder).items():
        if name in skip:
            continue
        subfolder = os.path.join(folder, name)
        if component_class is not None and not os.path.isdir(subfolder):
            raise FileNotFoundError(
                f"{folder} lists the component {name!r} in model_index.json but has no {name}/ folder: "
                "the pipeline was saved incompletely; save it again with pipe.save_pretrained(folder)"
            )
        if component_class is None:
            components[name] = None
        elif name == "scheduler":
            components[name] = component_class.from_pretrained(subfolder)
        else:
            check_weights(os.listdir(subfolder), name, folder)
            components[name] = component_class.from_pretrained(subfolder, use_safetensors=True, **loader_args)
    return components

