"""The fidelity benchmark's factor reader: a supervised classifier that reads the factors of a shapes3d-procedural
image, independent of any model under test.

It is `factor_probe.py`'s probe (the `cpu` preset's encoder trunk with one linear head per factor), trained once on
32x32 images and kept as an asset (safetensors weights, JSON config with its held-out accuracy), so that every model
is read by the same reader:

    python benchmarks/fidelity/factor_reader.py --images 300000     # writes assets/factor_reader_shapes3d_32.*

`load_reader()` loads it; `FactorReader.read(images)` takes numpy (B, H, W, C) or tensors (B, C, H, W) in [0, 1].
"""

import argparse
import json
import os
import sys
from argparse import Namespace

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # benchmarks/, for factor_probe

from factor_probe import PROBE_WIDTH, FactorProbe, train_probe  # noqa: E402

DATA, SIZE = "shapes3d-procedural", 32
ASSET = os.path.join(HERE, "assets", f"factor_reader_shapes3d_{SIZE}")


class FactorReader:
    """Reads each factor's value index from images with a trained `FactorProbe`."""

    def __init__(self, probe: FactorProbe, factor_names: list, accuracy: dict):
        self.probe, self.factor_names, self.accuracy = probe.eval(), list(factor_names), accuracy

    @torch.no_grad()
    def read(self, images) -> np.ndarray:
        """Factor value indices (B, K) of images: numpy (B, H, W, C) or tensors (B, C, H, W), in [0, 1]."""
        batch = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images).float()
        if batch.shape[-1] in (1, 3) and batch.shape[1] not in (1, 3):
            batch = batch.permute(0, 3, 1, 2)
        batch = batch * 2 - 1
        chunks = [self.probe(batch[i : i + 512]) for i in range(0, len(batch), 512)]
        return np.stack([torch.cat([chunk[k] for chunk in chunks]).argmax(1).numpy() for k in range(len(self.factor_names))], 1)


def load_reader(path: str = ASSET) -> FactorReader:
    """The reader saved at `path` (.safetensors + .json); train it first with this script if it is missing."""
    from safetensors.torch import load_file

    if not os.path.isfile(path + ".safetensors"):
        raise FileNotFoundError(f"{path}.safetensors: no factor reader; train it with `python {os.path.relpath(__file__)}`")
    with open(path + ".json") as file:
        config = json.load(file)
    probe = FactorProbe(config["image_size"], config["factor_sizes"], config["width"])
    probe.load_state_dict(load_file(path + ".safetensors"))
    return FactorReader(probe, config["factor_names"], config["accuracy"])


def main(argv=None) -> None:
    from safetensors.torch import save_file

    from concept_diffusion import load_ground_truth
    from concept_diffusion.atomic import atomic_path, write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300_000, help="training images")
    parser.add_argument("--test", type=int, default=5_000, help="held-out images its accuracy is measured on")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=ASSET, help="path without extension (.safetensors and .json are written)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = load_ground_truth(DATA, image_size=SIZE)
    trained = train_probe(data, Namespace(images=args.images, test=args.test, evaluations=5,
                                          learning_rate=args.learning_rate, seed=args.seed), keep_model=True)
    probe = trained.pop("model").eval()
    with atomic_path(args.out + ".safetensors", ".safetensors") as temporary:
        save_file({k: v.contiguous() for k, v in probe.state_dict().items()}, temporary)
    write_json(args.out + ".json", {
        "data": DATA, "image_size": SIZE, "factor_names": list(data.factor_names), "factor_sizes": list(data.factor_sizes),
        "width": PROBE_WIDTH, "command": "python benchmarks/fidelity/factor_reader.py " + " ".join(argv or sys.argv[1:]),
        **trained})
    print("held-out accuracy:", ", ".join(f"{name} {value:.4f}" for name, value in trained["accuracy"].items()))


if __name__ == "__main__":
    main()
