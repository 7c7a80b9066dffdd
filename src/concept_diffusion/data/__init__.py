"""Ground-truth factor data: one interface (`FactorData`; `GroundTruthData` for a full factor grid,
`LabelledImages` for labelled images without one), procedural generators, readers for the official
files, and `datasets` / Hub conversion.

Example:
    >>> from concept_diffusion.data import load_ground_truth, list_ground_truth
    >>> list_ground_truth()
    {'shapes3d-procedural': ..., 'dsprites-procedural': ..., 'colour-dsprites-procedural': ...}
    >>> data = load_ground_truth("shapes3d-procedural", image_size=64)
    >>> factors, images = data.sample(16, numpy.random.RandomState(0))
"""

from concept_diffusion.data.cars3d import Cars3D
from concept_diffusion.data.dsprites import DSprites
from concept_diffusion.data.dsprites_procedural import ColourDSpritesProcedural, DSpritesProcedural
from concept_diffusion.data.ground_truth import FactorData, GroundTruthData
from concept_diffusion.data.hf_datasets import HFGroundTruthData, to_hf_dataset
from concept_diffusion.data.labelled import LabelledImages
from concept_diffusion.data.mpi3d import MPI3D
from concept_diffusion.data.push import push_ground_truth_to_hub
from concept_diffusion.data.shapes3d import Shapes3D
from concept_diffusion.data.shapes3d_procedural import Shapes3DProcedural
from concept_diffusion.data.smallnorb import SmallNORB
from concept_diffusion.data.sources import list_ground_truth, load_ground_truth

__all__ = [
    "FactorData",
    "GroundTruthData",
    "LabelledImages",
    "load_ground_truth",
    "list_ground_truth",
    "to_hf_dataset",
    "push_ground_truth_to_hub",
    "HFGroundTruthData",
    "Shapes3DProcedural",
    "DSpritesProcedural",
    "ColourDSpritesProcedural",
    "Shapes3D",
    "DSprites",
    "MPI3D",
    "Cars3D",
    "SmallNORB",
]
