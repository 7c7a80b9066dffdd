"""Giving parallel scikit-learn fits the random numbers a sequential run would have given them.

disentanglement_lib fits its estimators one after another with `random_state=None`, so each fit
draws from numpy's global RNG where the previous one stopped: every tree of a
GradientBoostingClassifier draws one seed (its feature order, which breaks ties between equally
good splits) and every LinearSVC draws one seed for liblinear. To fit them in parallel and still
get the reference's numbers, each fit gets a private RandomState set to the state the shared RNG
would have when that fit starts, and the shared RNG is advanced past all the draws, ending where
the sequential run ends.
"""

import os

import numpy as np

# Both sklearn's tree splitter (`randint(0, RAND_R_MAX)`) and liblinear (`randint(iinfo("i").max)`)
# draw integers below 2**31 - 1; one such draw per fitted tree or per LinearSVC.
_SEED_BOUND = np.iinfo(np.int32).max


def shared_random_state(random_state):
    """The RandomState estimators draw from: `random_state`, or numpy's global one when None."""
    if random_state is None:
        return np.random.mtrand._rand
    if not isinstance(random_state, np.random.RandomState):
        raise ValueError(
            "estimator_random_state must be None (numpy's global RNG, as disentanglement_lib) or a "
            f"numpy.random.RandomState, got {type(random_state).__name__}."
        )
    return random_state


def fork_random_states(random_state, draws_per_fit):
    """One RandomState per fit, each starting where a sequential run's fit would start.

    Example:
        >>> forks = fork_random_states(None, [100 * 10, 100 * 4])  # two GBC fits, 10 and 4 classes
    """
    shared = shared_random_state(random_state)
    forks = []
    for draws in draws_per_fit:
        fork = np.random.RandomState()
        fork.set_state(shared.get_state())
        forks.append(fork)
        for _ in range(draws):
            shared.randint(0, _SEED_BOUND)
    return forks


def resolve_n_jobs(n_jobs):
    """Number of worker threads: `n_jobs`, or every core this process may use when None."""
    if n_jobs is None:
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise ValueError(f"n_jobs must be None (all cores) or an integer >= 1, got {n_jobs!r}.")
    return n_jobs
