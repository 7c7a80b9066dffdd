"""Drawing (codes, factors) samples exactly as disentanglement_lib does, but encoding in chunks.

The random draws (which factors, which observations) happen in the reference's order and batch
sizes, so the same `random_state` gives the same samples. Only the calls to `representation_fn`
are regrouped into larger chunks, which is faster and gives the same codes as long as the
representation maps each observation on its own (true for any model in eval mode).
"""

import numpy as np

# Observations are gathered into chunks of at least this many rows before `representation_fn` is
# called: large enough to keep an accelerator busy, small enough to hold 64x64 images in memory.
ENCODE_CHUNK_ROWS = 1024


def check_codes(codes, num_rows, name="representation_fn"):
    """Return `codes` as an array (num_rows, d) after checking shape and values.

    The dtype is kept: disentanglement_lib computes variances and histograms in the dtype the
    representation returns, and so do we.
    """
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(
            f"{name} must return a 2-D array (num_observations, num_codes), got shape {codes.shape}: "
            "reshape its output to (n, d), e.g. codes.reshape(len(codes), -1)."
        )
    if codes.shape[0] != num_rows:
        raise ValueError(
            f"{name} returned {codes.shape[0]} rows for {num_rows} observations: it must return one "
            "row of codes per observation, in order."
        )
    if not np.issubdtype(codes.dtype, np.number):
        raise ValueError(f"{name} must return numbers, got dtype {codes.dtype}.")
    if not np.all(np.isfinite(codes)):
        bad = int(np.sum(~np.isfinite(codes)))
        raise ValueError(
            f"{name} returned {bad} NaN or infinite values: the representation is broken "
            "(check the model's weights and its input range)."
        )
    return codes


def check_factors(factors, num_rows, name="factors"):
    """Return `factors` as an integer array (num_rows, k) after checking it."""
    factors = np.asarray(factors)
    if factors.ndim != 2 or factors.shape[0] != num_rows:
        raise ValueError(
            f"{name} must be an array of shape ({num_rows}, num_factors) with one row per code row, "
            f"got shape {factors.shape}."
        )
    if not np.issubdtype(factors.dtype, np.integer):
        raise ValueError(f"{name} must hold integer factor values, got dtype {factors.dtype}: use factor indices.")
    return factors


def check_count(value, name, minimum):
    """Raise a ValueError unless `value` is an int of at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")


class ChunkedEncoder:
    """Collects observations and encodes them in chunks; hands back codes in the order given.

    `add(observations, tag)` queues a batch; whenever enough rows are queued they are encoded and
    `(tag, codes)` pairs become available from `ready()`. `flush()` encodes the rest.
    """

    def __init__(self, representation_fn, chunk_rows=ENCODE_CHUNK_ROWS):
        self.representation_fn = representation_fn
        self.chunk_rows = chunk_rows
        self._queued = []
        self._queued_rows = 0
        self._done = []

    def add(self, observations, tag=None):
        self._queued.append((tag, observations))
        self._queued_rows += len(observations)
        if self._queued_rows >= self.chunk_rows:
            self.flush()

    def flush(self):
        if not self._queued:
            return
        observations = np.concatenate([obs for _, obs in self._queued])
        codes = check_codes(self.representation_fn(observations), len(observations))
        start = 0
        for tag, obs in self._queued:
            self._done.append((tag, codes[start : start + len(obs)]))
            start += len(obs)
        self._queued, self._queued_rows = [], 0

    def ready(self):
        done, self._done = self._done, []
        return done


def encode_observations(observations, representation_fn):
    """Codes (n, d) of `observations`, encoded in chunks."""
    encoder = ChunkedEncoder(representation_fn)
    for start in range(0, len(observations), encoder.chunk_rows):
        encoder.add(observations[start : start + encoder.chunk_rows])
    encoder.flush()
    return np.concatenate([codes for _, codes in encoder.ready()])


def draw_pairs(ground_truth_data, num_points, random_state, batch_size=16):
    """Yield (factors, observations) batches as disentanglement_lib's `generate_batch_factor_code` draws them.

    `ground_truth_data.sample(batch_size, random_state)` repeatedly, the last batch smaller; the
    draws depend on nothing else, so `evaluate` can plan them before encoding anything.
    """
    check_count(num_points, "num_points", 1)
    check_count(batch_size, "batch_size", 1)
    drawn = 0
    while drawn < num_points:
        num = min(num_points - drawn, batch_size)
        yield ground_truth_data.sample(num, random_state)
        drawn += num


def sample_codes_and_factors(ground_truth_data, representation_fn, num_points, random_state, batch_size=16):
    """Sample `num_points` (codes, factors) pairs as disentanglement_lib's `generate_batch_factor_code`.

    Draws `ground_truth_data.sample(batch_size, random_state)` repeatedly (the last batch may be
    smaller), so the factors equal the reference's; returns codes (n, d) and factors (n, k).

    Example:
        >>> codes, factors = sample_codes_and_factors(data, fn, 1000, np.random.RandomState(0))
    """
    encoder = ChunkedEncoder(representation_fn)
    factors = []
    for batch_factors, observations in draw_pairs(ground_truth_data, num_points, random_state, batch_size):
        factors.append(np.asarray(batch_factors))
        encoder.add(observations)
    encoder.flush()
    codes = np.concatenate([codes for _, codes in encoder.ready()])
    return codes, np.concatenate(factors)


def require_factor_grid(ground_truth_data, metric):
    """Raise a ValueError naming the reason when `metric` (FactorVAE, BetaVAE) cannot run on the data.

    Both fix one factor and draw the others at random, which needs an image for every combination
    of factor values; a labelled data set that is not a full grid has no such images.
    """
    if getattr(ground_truth_data, "has_factor_grid", True) is False:
        raise ValueError(
            f"{metric} needs a full factor grid: it fixes one factor and draws images for random values of the "
            f"others, but {ground_truth_data!r} is labelled images without an image for every combination of "
            "factor values. Score it with the pair metrics dci, mig, sap and modularity, which need only "
            "(image, factors) pairs."
        )
