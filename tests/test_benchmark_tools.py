"""The diagnostics: the concept-factor map reads a disentangled code as one (and names each concept's
factor), and the training-step profiler runs end to end on the tiny preset."""

import json
import sys
from pathlib import Path

import numpy as np

from concept_diffusion.evaluation.concept_factors import concept_factor_map, concept_labels

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def grid_factors(count, sizes, seed=0):
    rng = np.random.RandomState(seed)
    return np.stack([rng.randint(0, size, count) for size in sizes], axis=1)


def test_concept_factor_map_finds_each_factor_in_its_concept():
    factors = grid_factors(600, [4, 5, 3])
    order = [2, 0, 1]  # concept i carries factor order[i], plus one concept of noise
    rng = np.random.RandomState(1)
    codes = np.concatenate([factors[:, order] + 0.1 * rng.rand(600, 3), rng.rand(600, 1)], axis=1)
    normalised, accuracy = concept_factor_map(codes, factors)
    assert normalised.shape == (4, 3) and accuracy.shape == (3,)
    for concept, factor in enumerate(order):
        assert normalised[concept, factor] > 0.95
        assert np.delete(normalised[:, factor], concept).max() < 0.1
    assert accuracy.min() > 0.95
    assert concept_labels(normalised, ["a", "b", "c"]) == ["c", "a", "b", "-"]  # the noise concept carries none


def test_concept_factor_map_of_a_mixed_code_is_smeared():
    factors = grid_factors(600, [6, 6])
    codes = factors @ np.array([[1.0, 1.0], [1.0, -1.0]]) + 0.01 * np.random.RandomState(2).rand(600, 2)
    normalised, accuracy = concept_factor_map(codes, factors)
    assert normalised.max() < 0.8  # no concept holds a factor alone
    assert accuracy.min() > 0.9  # yet together they still predict both


def test_train_step_speed_runs_on_the_tiny_preset(tmp_path):
    from train_step_speed import main

    out = tmp_path / "speed.json"
    assert main(["--preset", "tiny", "--batch-size", "4", "--steps", "1", "--rounds", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["phase_seconds"]) == {"data", "first_stage", "forward", "backward", "optimizer", "ema"}
    assert set(result["images_per_second"]) == {"before", "after"}
    assert all(value > 0 for value in result["images_per_second"].values())
