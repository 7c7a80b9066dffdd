"""The FactorVAE disentanglement score.

Kim and Mnih, "Disentangling by Factorising", ICML 2018 (https://arxiv.org/abs/1802.05983), with
disentanglement_lib's protocol: codes are scaled by their global standard deviation (estimated
on 10,000 points, ddof=1); codes with a standard deviation below 0.05 are pruned; each vote fixes
one random factor over a batch of 64 points and votes for the code of least (scaled, ddof=1)
variance; a majority-vote classifier is read off 10,000 training votes and scored on 5,000 more.
"""

from itertools import islice

import numpy as np

from concept_diffusion.evaluation.sampling import ChunkedEncoder, check_count, encode_observations, require_factor_grid


def compute_factor_vae(
    ground_truth_data,
    representation_fn,
    random_state,
    batch_size=64,
    num_train=10000,
    num_eval=5000,
    num_variance_estimate=10000,
    prune_threshold=0.05,
    progress=None,
):
    """FactorVAE score of `representation_fn` on `ground_truth_data` (disentanglement_lib's `compute_factor_vae`).

    Returns `train_accuracy`, `eval_accuracy` and `num_active_dims`. `num_active_dims` is the
    number of codes kept after pruning (disentanglement_lib reports the total number of codes
    there, `len` of its boolean mask); the accuracies are the reference's. A representation with
    every code pruned scores 0. `progress` is an optional tqdm-like bar advanced once per vote.

    Example:
        >>> compute_factor_vae(data, encode, np.random.RandomState(0), num_train=500, num_eval=250)["eval_accuracy"]
    """
    check_count(batch_size, "batch_size", 2)  # ddof=1 variances need two points
    check_count(num_train, "num_train", 1)
    check_count(num_eval, "num_eval", 1)
    check_count(num_variance_estimate, "num_variance_estimate", 2)
    if not prune_threshold >= 0:
        raise ValueError(f"prune_threshold must be >= 0, got {prune_threshold!r}.")

    require_factor_grid(ground_truth_data, "FactorVAE")
    draws = factor_vae_draws(ground_truth_data, random_state, batch_size, num_train, num_eval, num_variance_estimate)
    _, _, observations = next(draws)
    global_variances = np.var(encode_observations(observations, representation_fn), axis=0, ddof=1)
    del observations
    active_dims = np.sqrt(global_variances) >= prune_threshold
    if not active_dims.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}

    training_votes = _votes(ground_truth_data.num_factors, islice(draws, num_train), representation_fn, global_variances, active_dims, progress)
    classifier = np.argmax(training_votes, axis=0)
    other_index = np.arange(training_votes.shape[1])
    train_accuracy = np.sum(training_votes[classifier, other_index]) * 1.0 / np.sum(training_votes)
    eval_votes = _votes(ground_truth_data.num_factors, islice(draws, num_eval), representation_fn, global_variances, active_dims, progress)
    eval_accuracy = np.sum(eval_votes[classifier, other_index]) * 1.0 / np.sum(eval_votes)
    return {
        "train_accuracy": float(train_accuracy),
        "eval_accuracy": float(eval_accuracy),
        "num_active_dims": int(active_dims.sum()),
    }


def factor_vae_draws(ground_truth_data, random_state, batch_size=64, num_train=10000, num_eval=5000, num_variance_estimate=10000):
    """The reference's random draws, in its order: yields (phase, fixed factor, observations).

    First ("variance", None, the `num_variance_estimate` observations), then one ("train", i,
    batch) per training vote and one ("eval", i, batch) per evaluation vote, each batch sharing
    the value of factor i. No draw depends on a code, so `evaluate` can plan every image first.
    """
    _, observations = ground_truth_data.sample(num_variance_estimate, random_state)
    yield "variance", None, observations
    for phase, num_votes in (("train", num_train), ("eval", num_eval)):
        for _ in range(num_votes):
            factor_index = random_state.randint(ground_truth_data.num_factors)
            factors = ground_truth_data.sample_factors(batch_size, random_state)
            factors[:, factor_index] = factors[0, factor_index]
            yield phase, factor_index, ground_truth_data.sample_observations_from_factors(factors, random_state)


def _votes(num_factors, draws, representation_fn, global_variances, active_dims, progress):
    """Votes (num_factors, num_active_codes): how often fixing factor i made active code j the least variable."""
    votes = np.zeros((num_factors, int(active_dims.sum())), dtype=np.int64)
    encoder = ChunkedEncoder(representation_fn)

    def count(done):
        for factor_index, codes in done:
            # Per-batch variances with the same reduction as np.var on one (batch, d) array.
            local_variances = np.var(codes, axis=0, ddof=1)
            votes[factor_index, np.argmin(local_variances[active_dims] / global_variances[active_dims])] += 1
            if progress is not None:
                progress.update(1)

    for _, factor_index, observations in draws:
        encoder.add(observations, factor_index)
        count(encoder.ready())
    encoder.flush()
    count(encoder.ready())
    return votes
