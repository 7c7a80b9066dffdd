"""Time the user's path, `evaluate` on a saved pipeline end to end, beside each metric alone.

End to end: `evaluate(PIPELINE, "shapes3d-procedural", all six metrics)` at disentanglement_lib's
full default sizes, timed from the saved folder to the scores (loading, rendering, encoding each
distinct image once, the metrics); with `--uncached`, also the same call encoding every draw as
disentanglement_lib does (the time before the code cache), and whether the scores are identical.

Metric alone: observations come from shapes3d-procedural's own `sample_factors` (so the random
draws are the real ones) but are the factor vectors themselves instead of rendered images, and the
representation is a fixed 20-code numpy map of them; so neither rendering nor an encoder is inside
the metric times. DCI's `fast` option is compared with the exact value.

    python benchmarks/metrics_speed.py --pipeline outputs/quickstart/pipeline   # full sizes
    python benchmarks/metrics_speed.py --pipeline cpu --scale 0.02 --repeats 1  # a quick look
"""

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

from concept_diffusion.data import load_ground_truth
from concept_diffusion.evaluation import METRICS, evaluate
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


def scaled_sizes(name, scale):
    """The metric's sample sizes (num_*) times `scale`, at least 2 each."""
    sizes = {key: value for key, value in _defaults(name).items() if key.startswith("num_") and key != "num_bins"}
    return {key: max(2, int(value * scale)) for key, value in sizes.items()}


def time_end_to_end(pipeline, scale, cache):
    """Seconds and scores of `evaluate` from a saved folder (or a preset built untrained) to the scores."""
    metric_kwargs = {name: scaled_sizes(name, scale) for name in METRICS}
    start = time.perf_counter()
    if os.path.isdir(pipeline):
        model = pipeline                     # evaluate loads it: loading is part of the user's path
    else:
        import torch

        from concept_diffusion import build_pipeline

        torch.manual_seed(0)
        model = build_pipeline(pipeline)
    scores = evaluate(model, "shapes3d-procedural", list(METRICS), metric_kwargs=metric_kwargs, cache=cache)
    return time.perf_counter() - start, scores


def time_metrics_alone(scale, repeats, dci_repeats):
    """Median seconds of each metric on factor-vector observations (no rendering, no encoder)."""
    real = load_ground_truth("shapes3d-procedural")
    data = FactorsAsObservations(real)
    representation_fn = make_representation(real.num_factors)
    real.sample(5000, np.random.RandomState(1))  # builds the one-time geometry maps: steady state below
    start = time.perf_counter()
    real.sample(5000, np.random.RandomState(0))
    images_per_second = 5000 / (time.perf_counter() - start)
    entries, exact_dci = {}, None
    for name, fast in [(name, False) for name in METRICS] + [("dci", True)]:
        sizes = scaled_sizes(name, scale)
        kwargs = dict(sizes)
        if name == "dci":
            kwargs["fast"] = fast
        times, scores = [], None
        for _ in range(dci_repeats if (name == "dci" and not fast) else repeats):
            if name in ("dci", "sap"):
                kwargs["estimator_random_state"] = np.random.RandomState(0)
            start = time.perf_counter()
            scores = METRICS[name](data, representation_fn, np.random.RandomState(0), **kwargs)
            times.append(time.perf_counter() - start)
        entry = {"median_s": statistics.median(times), "times_s": times, "scores": scores, "sizes": sizes}
        entry["draws"] = observations_drawn(name, {**_defaults(name), **sizes})
        if name == "dci" and not fast:
            exact_dci = scores
        if fast and exact_dci is not None:
            entry["abs_difference_from_exact"] = {key: abs(scores[key] - exact_dci[key]) for key in scores}
        entries["dci_fast" if fast else name] = entry
        print(f"{'dci_fast' if fast else name:<11} {entry['median_s']:8.2f} s  {json.dumps(scores)}", flush=True)
    return entries, images_per_second


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", default="cpu", help="a saved pipeline's folder, or a preset name built untrained (default: cpu)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every sample size (default 1: full sizes)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of each cheap metric alone (median)")
    parser.add_argument("--dci-repeats", type=int, default=1, help="exact DCI takes half a minute; repeat it this often")
    parser.add_argument("--uncached", action="store_true", help="also time evaluate(cache=False): every draw encoded (minutes)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "metrics_speed.json"))
    args = parser.parse_args()

    results = {"cores": len(os.sched_getaffinity(0)), "torch_threads": None, "scale": args.scale, "pipeline": args.pipeline}
    import torch

    results["torch_threads"] = torch.get_num_threads()
    end_to_end, scores = time_end_to_end(args.pipeline, args.scale, cache=True)
    results["end_to_end"] = {"cached_s": end_to_end, "scores": scores}
    print(f"evaluate end to end (6 metrics): {end_to_end:.1f} s", flush=True)
    if args.uncached:
        uncached, uncached_scores = time_end_to_end(args.pipeline, args.scale, cache=False)
        results["end_to_end"].update(uncached_s=uncached, uncached_scores_identical=uncached_scores == scores)
        print(f"evaluate end to end, every draw encoded: {uncached:.1f} s (scores identical: {uncached_scores == scores})", flush=True)
    results["metrics"], results["rendering_images_per_second"] = time_metrics_alone(args.scale, args.repeats, args.dci_repeats)
    exact_total = sum(entry["median_s"] for label, entry in results["metrics"].items() if label != "dci_fast")
    results["total_metrics_alone_s"] = exact_total
    print_table(results)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    from concept_diffusion.atomic import write_json

    write_json(args.out, results)
    print(f"wrote {args.out}")
    return 0


def print_table(results):
    print(f"\n{'metric alone':<13} {'median s':>9} {'draws':>10}")
    for label, entry in results["metrics"].items():
        print(f"{label:<13} {entry['median_s']:9.2f} {entry['draws']:10d}")
    total, end_to_end = results["total_metrics_alone_s"], results["end_to_end"]
    print(f"\n{'what':<50} {'seconds':>8}")
    print(f"{'six metrics alone (exact DCI)':<50} {total:8.1f}")
    print(f"{'evaluate end to end, each distinct image once':<50} {end_to_end['cached_s']:8.1f}")
    if "uncached_s" in end_to_end:
        print(f"{'evaluate end to end, every draw encoded':<50} {end_to_end['uncached_s']:8.1f}")
    print(f"{'rendering + encoding + loading (end to end - alone)':<50} {end_to_end['cached_s'] - total:8.1f}")
    print(f"({results['cores']} cores, {results['torch_threads']} torch threads, scale {results['scale']}, pipeline {results['pipeline']})")


if __name__ == "__main__":
    sys.exit(main())
