"""Finding a source by name, file, folder or Hub repo id, and what is known about each source."""

import re
import zipfile
from pathlib import Path

from concept_diffusion.data.cars3d import Cars3D
from concept_diffusion.data.dsprites import DSprites
from concept_diffusion.data.dsprites_procedural import ColourDSpritesProcedural, DSpritesProcedural
from concept_diffusion.data.ground_truth import FactorData
from concept_diffusion.data.mpi3d import MPI3D
from concept_diffusion.data.shapes3d import Shapes3D
from concept_diffusion.data.shapes3d_procedural import Shapes3DProcedural
from concept_diffusion.data.smallnorb import SmallNORB

PROCEDURAL = {
    "shapes3d-procedural": (Shapes3DProcedural, "Shapes3D's room scene and 6 factors (480,000 images), ray-cast on demand, RGB"),
    "dsprites-procedural": (DSpritesProcedural, "dSprites' white shapes on black and 5 factors (737,280 images), rendered on demand"),
    "colour-dsprites-procedural": (ColourDSpritesProcedural, "dSprites' shapes in 6 hues x 4 brightness levels on black: 7 factors, rendered on demand, RGB"),
}
OFFICIAL_FILES = {
    "3dshapes.h5": "Shapes3D (DeepMind), HDF5 with 'images' and 'labels'",
    "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz": "dSprites (DeepMind), .npz with 'imgs', 'latents_classes', 'latents_values'",
    "mpi3d_{toy,realistic,real}.npz": "MPI3D, .npz with 'images' (1036800, 64, 64, 3)",
    "FOLDER/car_XXX_mesh.mat": "Cars3D (Reed et al.), a folder of 183 .mat files with 'im'",
    "FOLDER/smallnorb-*-{dat,cat,info}.mat": "SmallNORB, a folder with the six NORB binary files",
    "FOLDER or user/name": "a datasets folder (save_to_disk) or Hub dataset repo: an image column and one column per factor",
    "FOLDER/metadata.csv": "a folder of images with metadata.csv: a file_name column, then one numeric column per factor",
}

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def list_ground_truth() -> dict[str, str]:
    """Names that `load_ground_truth` accepts without any file, each with a one-line description.

    Example:
        >>> list(list_ground_truth())
        ['shapes3d-procedural', 'dsprites-procedural', 'colour-dsprites-procedural']
    """
    return {name: description for name, (_, description) in PROCEDURAL.items()}


def load_ground_truth(name_or_path_or_repo_id, split: str = "train", image_size=None, **kwargs) -> FactorData:
    """Open a data set with known factors: a `GroundTruthData` (a full factor grid) or `LabelledImages`.

    Accepts a procedural name (`list_ground_truth()`), an official file or folder (3dshapes.h5,
    the dSprites and MPI3D .npz files, a Cars3D or SmallNORB folder), a folder written by
    `datasets`' save_to_disk, a Hub dataset repo id (an image column and one column per factor, as
    `to_hf_dataset` writes), or a folder of images with a `metadata.csv` (`datasets`' imagefolder
    layout: a `file_name` column, then one numeric column per factor). Labels that are not a full
    grid of value indices (a subset, continuous values) give `LabelledImages`: DCI, MIG, SAP and
    modularity score it; FactorVAE and BetaVAE need the grid.
    `split` picks the split of a `datasets` source; `image_size` is the rendering size of
    procedural sources and the resize target of Cars3D and SmallNORB (default 64). Other keyword
    arguments go to the source's class (e.g. `in_memory=True` for 3dshapes.h5, `cache_dir` for
    procedural sources, `factor_names` for a `datasets` source).

    Example:
        >>> data = load_ground_truth("shapes3d-procedural", image_size=32)
        >>> data = load_ground_truth("data/3dshapes.h5")
        >>> data = load_ground_truth("user/shapes3d-64", split="train")
        >>> data = load_ground_truth("my_images/")        # my_images/metadata.csv: file_name,size,hue
    """
    source = str(name_or_path_or_repo_id)
    if source in PROCEDURAL:
        return PROCEDURAL[source][0](image_size=64 if image_size is None else image_size, **kwargs)
    path = Path(source).expanduser()
    if path.exists():
        return _load_path(path, split, image_size, kwargs)
    if REPO_ID.match(source) and not source.endswith((".h5", ".hdf5", ".npz", ".mat")):
        import datasets

        return _check_native_size(open_dataset(datasets.load_dataset(source, split=split), source, **kwargs), image_size, source)
    if path.suffix or source.startswith((".", "/", "~")):
        raise FileNotFoundError(f"{source}: no such file or folder; expected one of the official files ({', '.join(OFFICIAL_FILES)})")
    raise ValueError(
        f"{source!r}: unknown data set; expected one of {list(PROCEDURAL)}, a path to an official file or "
        f"folder, or a Hub dataset repo id 'user/name' (see `concept-diffusion data list`)"
    )


def _load_path(path: Path, split: str, image_size, kwargs) -> FactorData:
    if path.is_dir():
        if any((path / marker).exists() for marker in ("dataset_info.json", "dataset_dict.json", "state.json", "metadata.csv")):
            return _check_native_size(open_dataset(_load_dataset_folder(path, split), str(path), **kwargs), image_size, path)
        size = 64 if image_size is None else image_size
        if any(path.glob("car_*_mesh.mat")):
            return Cars3D(path, image_size=size, **kwargs)
        if any(path.glob("smallnorb-*.mat")):
            return SmallNORB(path, image_size=size, **kwargs)
        raise ValueError(
            f"{path}: a folder, but not a Cars3D folder (car_XXX_mesh.mat), a SmallNORB folder "
            f"(smallnorb-*.mat), a datasets folder (dataset_info.json) or images with a metadata.csv; expected one of those"
        )
    if path.suffix in (".h5", ".hdf5"):
        return _check_native_size(Shapes3D(path, **kwargs), image_size, path)
    if path.suffix == ".npz":
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
        except zipfile.BadZipFile:
            raise ValueError(f"{path}: not a readable .npz archive; expected the dSprites or MPI3D .npz; the file may be truncated") from None
        if "imgs.npy" in names:
            return _check_native_size(DSprites(path, **kwargs), image_size, path)
        if "images.npy" in names:
            return _check_native_size(MPI3D(path, **kwargs), image_size, path)
        raise ValueError(f"{path}: arrays {sorted(n[:-4] for n in names)}; expected 'imgs' (dSprites) or 'images' (MPI3D)")
    raise ValueError(f"{path}: unknown file type {path.suffix!r}; expected one of the official files ({', '.join(OFFICIAL_FILES)})")


def open_dataset(dataset, source: str, factor_names=None, image_column: str = "image") -> FactorData:
    """A `datasets.Dataset` with images and factor columns as a source: `HFGroundTruthData` where the
    labels are a full grid of value indices, else `LabelledImages`."""
    from concept_diffusion.data.hf_datasets import HFGroundTruthData, NotAFactorGrid
    from concept_diffusion.data.labelled import LabelledImages

    try:
        return HFGroundTruthData(dataset, factor_names=factor_names, image_column=image_column, source=source)
    except NotAFactorGrid:
        return LabelledImages(dataset, factor_names=factor_names, image_column=image_column, source=source)


def _load_dataset_folder(path: Path, split: str):
    import datasets

    if (path / "metadata.csv").exists():
        with open(path / "metadata.csv", encoding="utf-8") as file:
            header = file.readline().strip().split(",")
        if "file_name" not in header:
            raise ValueError(f"{path / 'metadata.csv'}: columns {header}; expected a 'file_name' column, then one numeric column per factor")
        loaded = datasets.load_dataset("imagefolder", data_dir=str(path), split="train")
        return loaded.remove_columns([n for n in ("label",) if n in loaded.column_names and n not in header])
    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise ValueError(f"{path}: no split {split!r} (splits: {list(loaded)}); pass split=...")
        loaded = loaded[split]
    return loaded


def _check_native_size(data: FactorData, image_size, source) -> FactorData:
    if image_size is not None and image_size != data.image_size:
        raise ValueError(
            f"image_size: {source} stores {data.image_size}x{data.image_size} images, got image_size={image_size}; "
            f"leave it out (procedural sources render any size)"
        )
    return data
