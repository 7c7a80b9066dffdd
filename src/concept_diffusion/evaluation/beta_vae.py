"""The BetaVAE disentanglement score.

Higgins et al., "beta-VAE: Learning Basic Visual Concepts with a Constrained Variational
Framework", ICLR 2017 (https://openreview.net/forum?id=Sy2fzU9gl), with disentanglement_lib's
protocol (`compute_beta_vae_sklearn`): each point fixes one random factor across two batches of 64
and takes the mean absolute difference of their codes; a LogisticRegression predicts the fixed
factor; 10,000 training points, 5,000 evaluation points.
"""

from itertools import islice

import numpy as np

from concept_diffusion.evaluation.sampling import ChunkedEncoder, check_count, require_factor_grid


def compute_beta_vae(ground_truth_data, representation_fn, random_state, batch_size=64, num_train=10000, num_eval=5000, progress=None):
    """BetaVAE score of `representation_fn` on `ground_truth_data` (disentanglement_lib's `compute_beta_vae_sklearn`).

    Returns `train_accuracy` and `eval_accuracy`. `progress` is an optional tqdm-like bar
    advanced once per point.

    Example:
        >>> compute_beta_vae(data, encode, np.random.RandomState(0), num_train=500, num_eval=250)["eval_accuracy"]
    """
    from sklearn.linear_model import LogisticRegression

    check_count(batch_size, "batch_size", 1)
    check_count(num_train, "num_train", 2)
    check_count(num_eval, "num_eval", 1)
    require_factor_grid(ground_truth_data, "BetaVAE")
    draws = beta_vae_draws(ground_truth_data, random_state, batch_size, num_train, num_eval)
    train_points, train_labels = _points(islice(draws, num_train), representation_fn, num_train, progress)
    if len(np.unique(train_labels)) < 2:
        raise ValueError(
            f"the BetaVAE classifier needs at least two fixed factors among its {num_train} training points: "
            "use more points (num_train) or data with more than one factor."
        )
    model = LogisticRegression(random_state=random_state)
    model.fit(train_points, train_labels)
    train_accuracy = np.mean(model.predict(train_points) == train_labels)
    eval_points, eval_labels = _points(islice(draws, num_eval), representation_fn, num_eval, progress)
    eval_accuracy = model.score(eval_points, eval_labels)
    return {"train_accuracy": float(train_accuracy), "eval_accuracy": float(eval_accuracy)}


def beta_vae_draws(ground_truth_data, random_state, batch_size=64, num_train=10000, num_eval=5000):
    """The reference's random draws, in its order: yields (phase, fixed factor, observations).

    One ("train", i, observations) per training point, then one ("eval", i, observations) per
    evaluation point; the observations are the point's two batches one after the other
    (2 * batch_size rows), sharing the value of factor i. No draw depends on a code.
    """
    for phase, num_points in (("train", num_train), ("eval", num_eval)):
        for _ in range(num_points):
            label = random_state.randint(ground_truth_data.num_factors)
            factors1 = ground_truth_data.sample_factors(batch_size, random_state)
            factors2 = ground_truth_data.sample_factors(batch_size, random_state)
            factors2[:, label] = factors1[:, label]
            observations1 = ground_truth_data.sample_observations_from_factors(factors1, random_state)
            observations2 = ground_truth_data.sample_observations_from_factors(factors2, random_state)
            yield phase, label, np.concatenate([observations1, observations2])


def _points(draws, representation_fn, num_points, progress):
    """Features (num_points, d): mean |codes1 - codes2| of two batches sharing one factor; labels: that factor."""
    labels = np.zeros(num_points, dtype=np.int64)
    features = {}
    encoder = ChunkedEncoder(representation_fn)

    def collect(done):
        for i, codes in done:
            half = len(codes) // 2
            features[i] = np.mean(np.abs(codes[:half] - codes[half:]), axis=0)
            if progress is not None:
                progress.update(1)

    for i, (_, label, observations) in enumerate(draws):
        labels[i] = label
        encoder.add(observations, i)
        collect(encoder.ready())
    encoder.flush()
    collect(encoder.ready())
    points = np.zeros((num_points, features[0].shape[0]))
    for i in range(num_points):
        points[i, :] = features[i]
    return points, labels
