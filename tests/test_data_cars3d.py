"""Cars3D evaluated correctly: over its factor grid, evaluation reaches each of the 17,568 images by its own factors.

The released EncDiff code indexes Cars3D wrongly in evaluation. Here a full-size Cars3D folder is
generated in the official layout (183 files car_XXX_mesh.mat, each 'im' of shape
(H, W, RGB, azimuth 24, elevation 4)), tiny images whose colour spells out (elevation, azimuth,
car); a representation that reads the colour back must meet every image, each under its factors.
"""

import itertools

import numpy as np
from scipy.io import savemat

from concept_diffusion.data import Cars3D, load_ground_truth
from concept_diffusion.evaluation import evaluate
from concept_diffusion.evaluation.code_cache import CodeCache, IndexedObservations
from concept_diffusion.evaluation.sampling import sample_codes_and_factors

CARS, AZIMUTHS, ELEVATIONS = 183, 24, 4


def write_cars3d(folder, size=4):
    folder.mkdir()
    for car in range(CARS):
        im = np.zeros((size, size, 3, AZIMUTHS, ELEVATIONS), dtype=np.uint8)
        for azimuth, elevation in itertools.product(range(AZIMUTHS), range(ELEVATIONS)):
            im[:, :, :, azimuth, elevation] = (10 + 40 * elevation, 10 * azimuth, car)
        savemat(folder / f"car_{car + 1:03d}_mesh.mat", {"im": im})


def read_colour(observations):
    """Codes (n, 3) = (elevation, azimuth, car) spelled by each image's colour."""
    red, green, blue = (np.rint(observations[:, 0, 0, :] * 255).T)
    return np.stack([(red - 10) / 40, green / 10, blue], axis=1)


def test_evaluation_over_the_cars3d_grid_reaches_each_image_by_its_factors(tmp_path):
    write_cars3d(tmp_path / "cars")
    data = load_ground_truth(tmp_path / "cars", image_size=4)
    assert isinstance(data, Cars3D) and data.factor_sizes == [ELEVATIONS, AZIMUTHS, CARS] and len(data) == 17568

    seen = []

    def representation(observations):
        codes = read_colour(observations)
        seen.append(codes)
        return codes

    # FactorVAE at disentanglement_lib's full sizes draws 970,000 images: every one of the 17,568.
    scores = evaluate(representation, data, ["factor_vae"], progress=False)
    met = np.concatenate(seen)
    distinct = np.unique(met, axis=0)
    assert len(distinct) == 17568
    np.testing.assert_array_equal(distinct, np.array(list(itertools.product(range(ELEVATIONS), range(AZIMUTHS), range(CARS)))))
    # Codes equal to the factors score perfectly only if every draw got the image of its own factors.
    assert scores["factor_vae.eval_accuracy"] == 1.0 and scores["factor_vae.num_active_dims"] == 3

    # The pairs DCI, MIG, SAP and modularity draw: each code is its image's factors.
    cache = CodeCache(data, read_colour, progress=False)
    codes, factors = sample_codes_and_factors(IndexedObservations(data), cache, 5000, np.random.RandomState(1))
    np.testing.assert_array_equal(codes, factors)
    np.testing.assert_array_equal(read_colour(data.images(np.arange(len(data)))), data.index_to_factors(np.arange(len(data))))
