"""How fast the data layer renders and reads images.

Rendering speed (images/s at 64x64) of both procedural sets, and reading speed of the official
formats on files generated here in exactly those formats (sub-grids, so the benchmark needs no
download and little disk). Every number is the median of --repeats runs of random batches drawn
with sample_factors / sample_observations_from_factors, as metrics and training use them.

    python benchmarks/data_speed.py            # prints a table, writes benchmarks/results/data_speed.json
"""

import argparse
import itertools
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from scipy.io import savemat

from concept_diffusion.data import load_ground_truth


def images_per_second(data, batch_size, repeats, seed=0):
    rng = np.random.RandomState(seed)
    speeds = []
    for _ in range(repeats):
        factors = data.sample_factors(batch_size, rng)
        start = time.perf_counter()
        data.sample_observations_from_factors(factors, rng)
        speeds.append(batch_size / (time.perf_counter() - start))
    return statistics.median(speeds)


def loader_images_per_second(data, batch_size, batches):
    loader = iter(data.dataloader(batch_size=batch_size, seed=0))
    next(loader)
    start = time.perf_counter()
    for _ in range(batches):
        next(loader)
    return batches * batch_size / (time.perf_counter() - start)


def timed(make):
    start = time.perf_counter()
    result = make()
    return result, time.perf_counter() - start


def write_files(folder: Path, procedural):
    """Official-format files whose images come from the procedural generators."""
    shapes, dsprites = procedural
    paths = {}

    # 3dshapes.h5: floor hue 1 x wall hue 2 x the full object hue, scale, shape, orientation grid.
    labels = np.array(list(itertools.product([0.0], [0.0, 0.1], np.linspace(0, 0.9, 10).round(1), np.linspace(0.75, 1.25, 8), range(4), np.linspace(-30, 30, 15))))
    factors = np.array(list(itertools.product([0], [0, 1], range(10), range(8), range(4), range(15))))
    images = shapes._images_uint8(shapes.factors_to_index(factors))
    paths["3dshapes.h5"] = folder / "3dshapes.h5"
    with h5py.File(paths["3dshapes.h5"], "w") as f:
        f.create_dataset("images", data=images, chunks=(64, 64, 64, 3), compression="gzip")
        f.create_dataset("labels", data=labels)

    # dSprites .npz (compressed, 0/1 pixels): every shape, scale and orientation, x and y 8 each.
    sizes = [3, 6, 40, 8, 8]
    classes = np.array(list(itertools.product([0], *[range(s) for s in sizes])))
    imgs = (dsprites._images_uint8(dsprites.factors_to_index(classes[:, 1:]))[..., 0] > 127).astype(np.uint8)
    paths["dsprites.npz"] = folder / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
    np.savez_compressed(paths["dsprites.npz"], imgs=imgs, latents_classes=classes, latents_values=classes.astype(float))

    # mpi3d_toy.npz (uncompressed, memory-mapped): the full first five factors, 4 x 4 positions.
    mpi_sizes = [6, 6, 2, 3, 3, 4, 4]
    n = int(np.prod(mpi_sizes))
    paths["mpi3d_toy.npz"] = folder / "mpi3d_toy.npz"
    np.savez(paths["mpi3d_toy.npz"], images=np.resize(images, (n, 64, 64, 3)))

    # Cars3D: 8 cars, 128x128 renders of 24 azimuths x 4 elevations each.
    cars = folder / "cars"
    cars.mkdir()
    rng = np.random.RandomState(0)
    for car in range(8):
        savemat(cars / f"car_{car + 1:03d}_mesh.mat", {"im": rng.randint(0, 256, (128, 128, 3, 24, 4), dtype=np.uint8)})
    paths["cars3d"] = cars

    # SmallNORB: one instance per chunk (9,720 stereo pairs of 96x96).
    norb = folder / "norb"
    norb.mkdir()
    for chunk, instance in (("5x46789x9x18x6x2x96x96-training", 4), ("5x01235x9x18x6x2x96x96-testing", 0)):
        rows = np.array(list(itertools.product(range(5), [instance], range(9), range(0, 36, 2), range(6))), dtype=np.int32)
        for part, array, magic in (("dat", rng.randint(0, 256, (len(rows), 2, 96, 96), dtype=np.uint8), 0x1E3D4C55),
                                   ("cat", rows[:, 0].copy(), 0x1E3D4C54), ("info", rows[:, 1:].copy(), 0x1E3D4C54)):
            dims = list(array.shape) + [1] * max(0, 3 - array.ndim)
            (norb / f"smallnorb-{chunk}-{part}.mat").write_bytes(np.array([magic, array.ndim, *dims], "<i4").tobytes() + array.tobytes())
    paths["smallnorb"] = norb
    return paths


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "data_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = []

    shapes = load_ground_truth("shapes3d-procedural", image_size=64)
    # The first batch also ray-casts the coverage map of each (scale, shape, orientation) it meets.
    _, first = timed(lambda: shapes.sample_observations_from_factors(shapes.sample_factors(args.batch_size, np.random.RandomState(1)), None))
    rows.append(("shapes3d-procedural", "render 64x64, first batch (ray-casts geometry)", args.batch_size / first, f"{len(shapes._coverage)} maps built"))
    shapes.warm_up()
    rows.append(("shapes3d-procedural", "render 64x64", images_per_second(shapes, args.batch_size, args.repeats), f"batch {args.batch_size}"))
    rows.append(("shapes3d-procedural", "dataloader 64x64, 0 workers", loader_images_per_second(shapes, 64, 50), "batch 64"))
    dsprites = load_ground_truth("dsprites-procedural", image_size=64)
    rows.append(("dsprites-procedural", "render 64x64", images_per_second(dsprites, args.batch_size, args.repeats), f"batch {args.batch_size}"))
    rows.append(("dsprites-procedural", "dataloader 64x64, 0 workers", loader_images_per_second(dsprites, 64, 50), "batch 64"))

    with tempfile.TemporaryDirectory(prefix="data-speed-") as tmp:
        paths = write_files(Path(tmp), (shapes, dsprites))
        for label, path, kwargs in [
            ("3dshapes.h5 (lazy, gzip chunks)", paths["3dshapes.h5"], {}),
            ("3dshapes.h5 (in_memory=True)", paths["3dshapes.h5"], {"in_memory": True}),
            ("dsprites .npz (compressed)", paths["dsprites.npz"], {}),
            ("mpi3d .npz (uncompressed, memmap)", paths["mpi3d_toy.npz"], {"factor_sizes": [6, 6, 2, 3, 3, 4, 4]}),
            ("cars3d .mat folder", paths["cars3d"], {}),
            ("smallnorb .mat folder", paths["smallnorb"], {}),
        ]:
            data, seconds = timed(lambda: load_ground_truth(path, **kwargs))
            rows.append((label, f"open ({len(data)} images)", len(data) / seconds, f"{seconds:.2f} s"))
            rows.append((label, "read random batches", images_per_second(data, 64, args.repeats * 4), "batch 64"))

    print(f"{'source':<36} {'what':<48} {'images/s':>10}  note")
    for source, what, speed, note in rows:
        print(f"{source:<36} {what:<48} {speed:>10,.0f}  {note}")
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, torch threads 2",
        "rows": [dict(source=s, what=w, images_per_second=round(v, 1), note=n) for s, w, v, n in rows],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
