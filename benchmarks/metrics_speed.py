"""Time each disentanglement metric at disentanglement_lib's full default sizes on a 20-code
representation of shapes3d-procedural, and compare DCI's `fast` option with the exact value.

What is timed: the metric alone. Observations come from shapes3d-procedural's own
`sample_factors` (so the random draws are the real ones) but are the factor vectors themselves
instead of rendered images, and the representation is a fixed 20-code numpy map of them; so
neither rendering nor an encoder is inside the metric times. Rendering is timed separately and
reported as images/s with the number of images each metric would render.

    python benchmarks/metrics_speed.py              # full sizes, 3 repeats (1 for exact DCI)
    python benchmarks/metrics_speed.py --scale 0.1  # every sample size x0.1, for a quick look
"""

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

from concept_diffusion.data import load_ground_truth
from concept_diffusion.evaluation import METRICS
from concept_diffusion.evaluation.evaluate import _defaults


class FactorsAsObservations:
    """shapes3d-procedural's factor sampling, with the factor vector as the observation."""

    def __init__(self, data):
        self.data = data
        self.num_factors = data.num_factors
        self.factor_sizes = np.asarray(data.factor_sizes)

    def sample_factors(self, num, random_state):
        return self.data.sample_factors(num, random_state)

    def sample_observations_from_factors(self, factors, random_state):
        return (factors / (self.factor_sizes - 1)).astype(np.float32)

    def sample(self, num, random_state):
        factors = self.sample_factors(num, random_state)
        return factors, self.sample_observations_from_factors(factors, random_state)


def make_representation(num_factors, num_codes=20):
    """Six codes close to the factors, fourteen mixed ones; deterministic noise keyed on the values."""
    rng = np.random.RandomState(0)
    mixing = rng.randn(num_factors, num_codes - num_factors).astype(np.float32)

    def representation_fn(x):
        noise = np.sin(x @ rng.randn(num_factors, num_codes).astype(np.float32) * 97.0) * 0.02
        return np.concatenate([x, 0.3 * x @ mixing], axis=1) + noise.astype(np.float32)

    return representation_fn


def observations_drawn(name, sizes):
    """Images a metric renders at these sizes (what rendering would add to its time)."""
    if name == "factor_vae":
        return sizes["num_variance_estimate"] + (sizes["num_train"] + sizes["num_eval"]) * sizes["batch_size"]
    if name == "beta_vae":
        return (sizes["num_train"] + sizes["num_eval"]) * sizes["batch_size"] * 2
    return sizes["num_train"] + sizes.get("num_test", 0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every sample size (default 1: full sizes)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dci-repeats", type=int, default=1, help="exact DCI takes minutes; repeat it this often")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "metrics_speed.json"))
    args = parser.parse_args()

    real = load_ground_truth("shapes3d-procedural")
    data = FactorsAsObservations(real)
    representation_fn = make_representation(real.num_factors)
    results = {"cores": len(os.sched_getaffinity(0)), "scale": args.scale, "metrics": {}}

    real.sample(5000, np.random.RandomState(1))  # builds the one-time geometry maps: steady state below
    start = time.perf_counter()
    real.sample(5000, np.random.RandomState(0))
    images_per_second = 5000 / (time.perf_counter() - start)
    results["rendering_images_per_second"] = images_per_second

    runs = [(name, False) for name in METRICS] + [("dci", True)]
    exact_dci = None
    for name, fast in runs:
        sizes = {key: value for key, value in _defaults(name).items() if key.startswith("num_") and key != "num_bins"}
        sizes = {key: max(2, int(value * args.scale)) for key, value in sizes.items()}
        kwargs = dict(sizes)
        if name in ("dci", "sap"):
            kwargs["estimator_random_state"] = np.random.RandomState(0)
        if name == "dci":
            kwargs["fast"] = fast
        times, scores = [], None
        repeats = args.dci_repeats if (name == "dci" and not fast) else args.repeats
        for _ in range(repeats):
            if "estimator_random_state" in kwargs:
                kwargs["estimator_random_state"] = np.random.RandomState(0)
            start = time.perf_counter()
            scores = METRICS[name](data, representation_fn, np.random.RandomState(0), **kwargs)
            times.append(time.perf_counter() - start)
        label = "dci_fast" if fast else name
        entry = {"median_s": statistics.median(times), "times_s": times, "scores": scores, "sizes": sizes}
        all_sizes = {**_defaults(name), **sizes}
        entry["rendered_images"] = observations_drawn(name, all_sizes)
        entry["rendering_s_estimate"] = entry["rendered_images"] / images_per_second
        if name == "dci" and not fast:
            exact_dci = scores
        if fast and exact_dci is not None:
            entry["abs_difference_from_exact"] = {key: abs(scores[key] - exact_dci[key]) for key in scores}
        results["metrics"][label] = entry
        print(f"{label:<11} {entry['median_s']:8.2f} s  {json.dumps(scores)}", flush=True)

    exact_total = sum(entry["median_s"] for label, entry in results["metrics"].items() if label != "dci_fast")
    fast_total = exact_total - results["metrics"]["dci"]["median_s"] + results["metrics"]["dci_fast"]["median_s"]
    results["total_exact_s"], results["total_with_fast_dci_s"] = exact_total, fast_total
    print(f"\n{'metric':<11} {'median s':>9} {'rendered images':>16} {'rendering s (est.)':>19}")
    for label, entry in results["metrics"].items():
        print(f"{label:<11} {entry['median_s']:9.2f} {entry['rendered_images']:16d} {entry['rendering_s_estimate']:19.1f}")
    print(f"total (exact): {exact_total:.1f} s; with fast DCI: {fast_total:.1f} s; rendering {images_per_second:.0f} images/s")
    if "abs_difference_from_exact" in results["metrics"]["dci_fast"]:
        print("fast DCI - exact:", json.dumps(results["metrics"]["dci_fast"]["abs_difference_from_exact"]))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".tmp", "w") as file:
        json.dump(results, file, indent=2)
    os.replace(args.out + ".tmp", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
