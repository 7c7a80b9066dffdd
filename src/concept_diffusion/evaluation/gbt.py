"""scikit-learn's `GradientBoostingClassifier()` re-implemented: the same trees, bit for bit, fast.

DCI (disentanglement_lib's protocol) fits one `GradientBoostingClassifier()` with sklearn's
defaults per factor: log loss, 100 stages, learning rate 0.1, depth-3 regression trees on the
negative gradient (one tree per class and stage; one per stage for two classes), every feature
tried at every node. sklearn grows each tree by sorting the node's samples along every feature at
every node; here each feature is sorted once (`presort`, shared by all the factors of a DCI call)
and a node's sorted lists are split into its children's, which keeps them sorted.

Exactness (checked against scikit-learn 1.9.1 in tests/test_gbt.py): every floating-point
operation that sklearn performs is performed here in the same order, so the trees, leaf values,
`feature_importances_` and `decision_function` are identical, not just close. That needs sklearn's
exact order of samples inside a node wherever it can change a sum:
- the features are visited in the splitter's order: a Fisher-Yates draw from sklearn's `rand_r`,
  seeded per tree by `random_state.randint(0, 2**31 - 1)`, with its bookkeeping of constant
  features; the first of equally good splits wins, so this order decides exact ties;
- sums run in sklearn's order: a node's total in the order its parent's partition left the
  samples; a candidate split's left sum in the order of the sort along the feature, forward from
  the last candidate or backward from the end, as sklearn's criterion does.
A sort along a feature has one result when the samples that share a value are interchangeable
(same codes in every column, same label: they stay together in every node and always have the
same gradient); the presorted lists give it. Where samples that differ share a value (float32
collisions, discrete codes), sklearn's order among them comes from its introsort and the order
before it: the split search first uses the presorted order and checks that no decision rests on
the last bits of a sum that crosses such samples (else it searches the node again, sorting as
sklearn does), and before a node is split its samples are put in sklearn's order by replaying
sklearn's sorts (a port of its introsort) from the last sort whose result is unique.

Only sklearn's defaults are supported besides `n_estimators`, `learning_rate` and `max_depth`
(subsample 1, min_samples_split 2, min_samples_leaf 1, max_features None, no sample weights).
Before 1.9, sklearn's boosting trees used the friedman_mse criterion, which rounds differently:
there the values differ in their last digits (and more where rounding decides a near-tie).
"""

import math

import numpy as np
import scipy.special
import scipy.stats
from numba import njit

EXACT_SKLEARN_MINOR = (1, 9)  # the scikit-learn minor version whose trees these equal bit for bit (pinned in pyproject)


def installed_sklearn_is_exact() -> bool:
    """True when the installed scikit-learn is the minor version these trees reproduce exactly."""
    import sklearn

    major, minor = (int(part) for part in sklearn.__version__.split(".")[:2])
    return (major, minor) == EXACT_SKLEARN_MINOR


_RAND_R_MAX = 2147483647  # sklearn's tree seed is randint(0, RAND_R_MAX)
_FEATURE_THRESHOLD = 1e-7  # values closer than this are not split apart (sklearn's splitter)
_TREE_EPSILON = np.finfo(np.float64).eps  # sklearn's tree builder: purer nodes are leaves
_LEAF = -1


class PresortedCodes:
    """Codes as float32 (what sklearn fits on) with every column sorted once.

    Build it with `presort(codes)` and pass it to `GradientBoostedTrees.fit` for each factor.
    """

    def __init__(self, codes):
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[0] < 2 or codes.shape[1] < 1:
            raise ValueError(
                f"codes must be a 2-D array (num_points >= 2, num_codes >= 1), got shape {codes.shape}: "
                "reshape to (n, d)."
            )
        if not np.issubdtype(codes.dtype, np.number) or not np.all(np.isfinite(codes)):
            raise ValueError("codes must be finite numbers: drop or fix rows with NaN or infinite values.")
        # sklearn casts X to float32 and compares float32 values to float64 thresholds.
        self.codes = np.ascontiguousarray(codes, dtype=np.float32)
        self.order = np.ascontiguousarray(np.argsort(self.codes, axis=0, kind="stable").T.astype(np.int32))
        self.sorted_codes = np.ascontiguousarray(np.take_along_axis(self.codes.T, self.order, axis=1))
        # Rows that are equal everywhere (-0.0 and 0.0 behave the same in every comparison).
        _, self.row_ids = np.unique(self.codes + np.float32(0.0), axis=0, return_inverse=True)
        self.row_ids = self.row_ids.reshape(-1).astype(np.int64)

    def interchangeable(self, labels):
        """One key per sample: equal keys = same codes and same label. Such samples stay together
        and have the same gradient, so their order never changes a result."""
        return self.row_ids * (int(labels.max()) + 1) + labels

    def uniquely_sorted(self, keys):
        """Per column: do samples that share a value all have the same key? (then its sort has
        one result, whatever the order before it)."""
        key_sorted = keys[self.order]
        mixed_ties = (self.sorted_codes[:, 1:] == self.sorted_codes[:, :-1]) & (key_sorted[:, 1:] != key_sorted[:, :-1])
        return ~np.any(mixed_ties, axis=1)


def presort(codes):
    """Sort every column of `codes` (n, d) once, for several `GradientBoostedTrees.fit` calls.

    Example:
        >>> sorted_codes = presort(codes)
        >>> models = [GradientBoostedTrees(random_state=0).fit(codes, f, sorted_codes) for f in factors.T]
    """
    return PresortedCodes(codes)


class GradientBoostedTrees:
    """`sklearn.ensemble.GradientBoostingClassifier(n_estimators, learning_rate, max_depth,
    random_state)`, with the same fitted values, tens of times faster.

    `random_state` as in sklearn: None (numpy's global RNG), an int, or a `np.random.RandomState`
    (advanced by one draw per tree, as sklearn does).

    Example:
        >>> model = GradientBoostedTrees(random_state=0).fit(codes, labels)
        >>> model.feature_importances_, np.mean(model.predict(codes) == labels)
    """

    def __init__(self, n_estimators=100, learning_rate=0.1, max_depth=3, random_state=None):
        if isinstance(n_estimators, bool) or not isinstance(n_estimators, int) or n_estimators < 1:
            raise ValueError(f"n_estimators must be an integer >= 1, got {n_estimators!r}.")
        if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1:
            raise ValueError(f"max_depth must be an integer >= 1, got {max_depth!r}.")
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}.")
        self.n_estimators = n_estimators
        self.learning_rate = float(learning_rate)
        self.max_depth = max_depth
        self.random_state = random_state

    def fit(self, X, y, presorted=None):
        """Fit on codes `X` (n, d) and labels `y` (n,); `presorted`: `presort(X)`, to share sorting."""
        presorted = presort(X) if presorted is None else presorted
        X = np.asarray(X)
        if X.shape != presorted.codes.shape or not np.array_equal(X.astype(np.float32), presorted.codes):
            raise ValueError(
                f"presorted was built from other codes (shape {presorted.codes.shape}) than X (shape {X.shape}): "
                "pass presort(X) for this X."
            )
        y = np.asarray(y)
        if y.shape != (len(presorted.codes),):
            raise ValueError(f"y must have shape ({len(presorted.codes)},) (one label per row of X), got {y.shape}.")
        self.classes_, labels = np.unique(y, return_inverse=True)
        labels = labels.reshape(-1).astype(np.int64)
        num_classes = len(self.classes_)
        if num_classes < 2:
            raise ValueError(f"y must contain at least two classes, got only {self.classes_.tolist()}.")
        self.n_features_in_ = presorted.codes.shape[1]
        self._trees_per_stage = 1 if num_classes == 2 else num_classes
        rng = _random_state(self.random_state)
        # One draw per tree, in fitting order, exactly as sklearn's splitter takes them.
        seeds = np.array(
            [rng.randint(0, _RAND_R_MAX) for _ in range(self.n_estimators * self._trees_per_stage)], dtype=np.int64
        )
        self._prior = np.bincount(labels, minlength=num_classes) / len(labels)
        raw = _initial_raw_predictions(self._prior, len(labels))
        keys = presorted.interchangeable(labels)
        (self._feature, self._threshold, self._left, self._right, self._value, node_count, importances,
         self.n_nodes_resorted_) = _boost(
            presorted.codes, labels, keys, num_classes, raw, presorted.order, presorted.sorted_codes,
            presorted.uniquely_sorted(keys), seeds, self.n_estimators, self.learning_rate, self.max_depth,
        )
        relevant = importances[node_count > 1]
        if len(relevant) == 0:
            self.feature_importances_ = np.zeros(self.n_features_in_)
        else:
            average = np.mean(relevant, axis=0, dtype=np.float64)
            self.feature_importances_ = average / np.sum(average)
        return self

    def decision_function(self, X):
        """Raw scores (n, classes), or (n,) for two classes, as sklearn's `decision_function`."""
        X = self._check_X(X)
        raw = _initial_raw_predictions(self._prior, len(X))
        _add_tree_predictions(X, self._feature, self._threshold, self._left, self._right, self._value,
                              self.learning_rate, raw)
        return raw.ravel() if raw.shape[1] == 1 else raw

    def predict(self, X):
        """Predicted labels for codes `X` (n, d)."""
        raw = self.decision_function(X)
        encoded = (raw >= 0).astype(int) if raw.ndim == 1 else np.argmax(raw, axis=1)
        return self.classes_[encoded]

    def _check_X(self, X):
        if not hasattr(self, "_value"):
            raise ValueError("this GradientBoostedTrees is not fitted yet: call fit(X, y) first.")
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X must have shape (n, {self.n_features_in_}) like the codes it was fitted on, got {X.shape}.")
        if not np.all(np.isfinite(X)):
            raise ValueError("X must be finite: drop or fix rows with NaN or infinite values.")
        return np.ascontiguousarray(X, dtype=np.float32)


def _random_state(random_state):
    if random_state is None:
        return np.random.mtrand._rand
    if isinstance(random_state, np.random.RandomState):
        return random_state
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        return np.random.RandomState(random_state)
    raise ValueError(
        f"random_state must be None (numpy's global RNG), an int or a numpy.random.RandomState, got {random_state!r}."
    )


def _initial_raw_predictions(prior, num_rows):
    """sklearn's start: the log-odds of the class priors, computed with sklearn's array shapes."""
    eps = np.finfo(np.float64).eps
    proba = np.clip(np.ones((num_rows, 1)) * prior, eps, 1 - eps, dtype=np.float64)
    if len(prior) == 2:
        return scipy.special.logit(proba[:, 1]).reshape(-1, 1)
    return np.log(proba / scipy.stats.gmean(proba, axis=1)[:, None])


@njit(cache=True, nogil=True)
def _rand_int(state, low, high):
    """sklearn's `rand_int(low, high, &state)`: xorshift32 `our_rand_r`, then a modulo."""
    s = state[0]
    if s == 0:
        s = 1
    s ^= (s << 13) & 0xFFFFFFFF
    s ^= s >> 17
    s ^= (s << 5) & 0xFFFFFFFF
    state[0] = s
    return low + (s % 2147483648) % (high - low)


@njit(cache=True, nogil=True)
def _swap(values, indices, i, j):
    values[i], values[j] = values[j], values[i]
    indices[i], indices[j] = indices[j], indices[i]


@njit(cache=True, nogil=True)
def _median3(values, lo, n):
    a, b, c = values[lo], values[lo + n // 2], values[lo + n - 1]
    if a < b:
        if b < c:
            return b
        elif a < c:
            return c
        return a
    elif b < c:
        if a < c:
            return a
        return c
    return b


@njit(cache=True, nogil=True)
def _sift_down(values, indices, lo, start, end):
    root = start
    while True:
        child = root * 2 + 1
        largest = root
        if child < end and values[lo + largest] < values[lo + child]:
            largest = child
        if child + 1 < end and values[lo + largest] < values[lo + child + 1]:
            largest = child + 1
        if largest == root:
            return
        _swap(values, indices, lo + root, lo + largest)
        root = largest


@njit(cache=True, nogil=True)
def _heapsort(values, indices, lo, n):
    start = (n - 2) // 2
    while True:
        _sift_down(values, indices, lo, start, n)
        if start == 0:
            break
        start -= 1
    end = n - 1
    while end > 0:
        _swap(values, indices, lo, lo + end)
        _sift_down(values, indices, lo, 0, end)
        end -= 1


@njit(cache=True, nogil=True)
def _insertion_sort(values, indices, lo, n):
    for i in range(lo + 1, lo + n):
        value, index = values[i], indices[i]
        j = i
        while j > lo and values[j - 1] > value:
            values[j] = values[j - 1]
            indices[j] = indices[j - 1]
            j -= 1
        values[j] = value
        indices[j] = index


@njit(cache=True, nogil=True)
def _introsort(values, indices, lo, n, max_depth):
    """sklearn's `simultaneous_sort(..., use_three_way_partition=True)` on values[lo:lo + n]."""
    while n > 15:
        if max_depth <= 0:
            _heapsort(values, indices, lo, n)
            return
        max_depth -= 1
        pivot = _median3(values, lo, n)
        i = left = 0
        right = n
        while i < right:
            if values[lo + i] < pivot:
                _swap(values, indices, lo + i, lo + left)
                i += 1
                left += 1
            elif values[lo + i] > pivot:
                right -= 1
                _swap(values, indices, lo + i, lo + right)
            else:
                i += 1
        _introsort(values, indices, lo, left, max_depth)
        lo += right
        n -= right
    _insertion_sort(values, indices, lo, n)


@njit(cache=True, nogil=True)
def _sort_node(values, indices, start, end):
    n = end - start
    if n > 0:
        _introsort(values, indices, start, n, 2 * int(math.log2(n)))


@njit(cache=True, nogil=True)
def _best_split_along(values, order, mixed, target, start, end, sum_total, weight_total, feature, best, inverse):
    """Scan the split positions of one feature like sklearn's BestSplitter with the squared-error
    criterion, and offer each to `best` = [proxy, position, threshold, feature, is exact,
    bound on the other exact proxies, bound on the other inexact proxies].

    `mixed`: `order` may differ from sklearn's among samples that share a value but not their
    codes or label. A sum that crosses such samples with different targets may differ from
    sklearn's in its last bits: the candidates after it are marked inexact.
    """
    # Locals, not `best[...]`: the loop would otherwise wait on memory at every position.
    best_proxy, best_exact = best[0], best[4] > 0.0
    other_exact, other_inexact = best[5], best[6]
    skip_below = best_proxy * (1.0 - 1e-14)
    sum_left = 0.0
    weight_left = 0.0
    sums_exact = True
    pos = start
    p = start
    while p < end:
        p += 1
        crosses_mixed = False
        while p < end and np.float64(values[p]) <= np.float64(values[p - 1]) + _FEATURE_THRESHOLD:
            if mixed and values[p] == values[p - 1] and target[order[p]] != target[order[p - 1]]:
                crosses_mixed = True
            p += 1
        if p >= end:
            break
        # sklearn's criterion.update: move samples forward from the last position, or back from
        # the end when that is shorter; the rounding of the sums depends on it.
        if p - pos <= end - p:
            for q in range(pos, p):
                sum_left += target[order[q]]
                weight_left += 1.0
            sums_exact = sums_exact and not crosses_mixed
        else:
            sum_left = sum_total
            weight_left = weight_total
            for q in range(end - 1, p - 1, -1):
                sum_left -= target[order[q]]
                weight_left -= 1.0
            sums_exact = not mixed
        pos = p
        sum_right = sum_total - sum_left
        # Multiplying by reciprocals is within 1e-15 of sklearn's divisions and far cheaper: only
        # candidates that may reach the best so far get the exact value.
        approximate = sum_left * sum_left * inverse[p - start] + sum_right * sum_right * inverse[end - p]
        if approximate < skip_below:
            if sums_exact:
                other_exact = max(other_exact, approximate * (1.0 + 1e-14))
            else:
                other_inexact = max(other_inexact, approximate * (1.0 + 1e-14))
            continue
        weight_right = weight_total - weight_left
        proxy = sum_left * sum_left / weight_left + sum_right * sum_right / weight_right
        if proxy > best_proxy:
            if best_exact:
                other_exact = max(other_exact, best_proxy)
            else:
                other_inexact = max(other_inexact, best_proxy)
            best_proxy, best_exact = proxy, sums_exact
            skip_below = best_proxy * (1.0 - 1e-14)
            best[1] = p
            best[2] = np.float64(values[p - 1]) / 2.0 + np.float64(values[p]) / 2.0
            best[3] = feature
        elif sums_exact:
            other_exact = max(other_exact, proxy)
        else:
            other_inexact = max(other_inexact, proxy)
    best[0], best[4], best[5], best[6] = best_proxy, 1.0 if best_exact else 0.0, other_exact, other_inexact


@njit(cache=True, nogil=True)
def _mixed_in_node(sorted_values, order, keys, start, end):
    """Do samples with different codes or labels share a value of this feature in this node?"""
    for p in range(start + 1, end):
        if sorted_values[p] == sorted_values[p - 1] and keys[order[p]] != keys[order[p - 1]]:
            return True
    return False


@njit(cache=True, nogil=True)
def _sort_like_sklearn(codes_by_feature, feature, samples, values_buffer, start, end):
    column = codes_by_feature[feature]
    for p in range(start, end):
        values_buffer[p] = column[samples[p]]
    _sort_node(values_buffer, samples, start, end)


@njit(cache=True, nogil=True)
def _grow_tree(codes_by_feature, target, keys, order, sorted_values, uniquely_sorted, seed, max_depth, inverse,
               samples, values_buffer, goes_left, features, constant_features, features_before, chain, resorted,
               node_feature, node_threshold, node_left, node_right, node_impurity, node_weight):
    """One regression tree as sklearn's DepthFirstTreeBuilder + BestSplitter grow it.

    `codes_by_feature` is X.T (d, n). `samples` plays sklearn's `samples` array and is kept in
    sklearn's order at every node (up to interchangeable samples); `order[depth, f]` /
    `sorted_values[depth, f]` hold each node's samples sorted along feature f at that depth
    (depth 0: the whole set, given). Returns the number of nodes.

    A sort along a feature whose equal values in the node all belong to interchangeable samples
    has one result, the presorted one. For the other features ("mixed"), sklearn's order among
    equal values depends on its introsort and on the order before it. Their split positions are
    first scanned in the presorted order, which gives sklearn's sums except after equal values
    with different targets, where the last bits may differ: the best split must then beat those
    candidates by more than a bound on the rounding error, else the node is searched again with
    the mixed features sorted as sklearn sorts them (counted in `resorted`). Before the node is
    split, `samples` is brought into sklearn's order by replaying sklearn's sorts from the last
    sort with a unique result.
    """
    num_features, n = codes_by_feature.shape
    for i in range(n):
        samples[i] = i
    for f in range(num_features):
        features[f] = f
        constant_features[f] = 0
    state = np.array([seed], dtype=np.int64)
    best = np.empty(7)
    stack_size = 2 * max_depth + 2
    stack_start = np.empty(stack_size, dtype=np.int64)
    stack_end = np.empty(stack_size, dtype=np.int64)
    stack_depth = np.empty(stack_size, dtype=np.int64)
    stack_parent = np.empty(stack_size, dtype=np.int64)
    stack_is_left = np.empty(stack_size, dtype=np.bool_)
    stack_impurity = np.empty(stack_size)
    stack_constants = np.empty(stack_size, dtype=np.int64)
    stack_start[0], stack_end[0], stack_depth[0], stack_parent[0] = 0, n, 0, -1
    stack_is_left[0], stack_impurity[0], stack_constants[0] = False, np.inf, 0
    top = 1
    weight_samples = float(n)
    node_count = 0
    first = True
    while top > 0:
        top -= 1
        start, end, depth = stack_start[top], stack_end[top], stack_depth[top]
        parent, is_left = stack_parent[top], stack_is_left[top]
        impurity, known_constants = stack_impurity[top], stack_constants[top]

        sum_total = 0.0
        sq_sum_total = 0.0
        weight = 0.0
        sum_abs = 0.0
        largest_abs = 0.0
        for p in range(start, end):
            y = target[samples[p]]
            sum_total += y
            sq_sum_total += y * y
            weight += 1.0
            sum_abs += abs(y)
            largest_abs = max(largest_abs, abs(y))
        is_leaf = depth >= max_depth or end - start < 2
        if first:
            mean = sum_total / weight
            impurity = sq_sum_total / weight - mean * mean
            first = False
        is_leaf = is_leaf or impurity <= _TREE_EPSILON

        best_pos = end
        best_feature = 0
        threshold = 0.0
        impurity_left = impurity_right = np.inf
        total_constants = known_constants
        if not is_leaf:
            # sklearn's node_split_best: draw features without replacement, skip known constants.
            node_exact = False
            state_before = state[0]
            features_before[:] = features
            while True:
                best[0], best[1], best[2], best[3] = -np.inf, end, 0.0, 0
                best[4], best[5], best[6] = 1.0, -np.inf, -np.inf
                # samples[start:end] in sklearn's order = order[depth, base] (-1: as stored), then
                # sorted like sklearn along the `chain_length` features in `chain`.
                base = -1
                chain_length = 0
                f_i = num_features
                visited = found_constants = drawn_constants = 0
                while f_i > total_constants and (visited < num_features or visited <= found_constants + drawn_constants):
                    visited += 1
                    f_j = _rand_int(state, drawn_constants, f_i - found_constants)
                    if f_j < known_constants:
                        features[drawn_constants], features[f_j] = features[f_j], features[drawn_constants]
                        drawn_constants += 1
                        continue
                    f_j += found_constants
                    feature = features[f_j]
                    mixed = not uniquely_sorted[feature] and _mixed_in_node(
                        sorted_values[depth, feature], order[depth, feature], keys, start, end
                    )
                    if not mixed:
                        base = feature
                        chain_length = 0
                    elif node_exact:
                        if base >= 0:
                            samples[start:end] = order[depth, base, start:end]
                            base = -1
                        for i in range(chain_length):
                            _sort_like_sklearn(codes_by_feature, chain[i], samples, values_buffer, start, end)
                        chain_length = 0
                        _sort_like_sklearn(codes_by_feature, feature, samples, values_buffer, start, end)
                    else:
                        chain[chain_length] = feature
                        chain_length += 1
                    lowest, highest = sorted_values[depth, feature, start], sorted_values[depth, feature, end - 1]
                    if np.float64(highest) <= np.float64(lowest) + _FEATURE_THRESHOLD:
                        features[f_j], features[total_constants] = features[total_constants], features[f_j]
                        found_constants += 1
                        total_constants += 1
                        continue
                    f_i -= 1
                    features[f_i], features[f_j] = features[f_j], features[f_i]
                    if mixed and node_exact:
                        _best_split_along(values_buffer, samples, False, target, start, end, sum_total, weight,
                                          feature, best, inverse)
                    else:
                        _best_split_along(sorted_values[depth, feature], order[depth, feature], mixed, target,
                                          start, end, sum_total, weight, feature, best, inverse)
                decided = True
                if best[4] == 0.0 or best[6] > -np.inf:
                    # Some candidate sums may differ from sklearn's in their last bits: a sum of m
                    # terms in any order is within (m + 2) eps sum|y| of the exact sum (backward
                    # updates count twice), which bounds how far either proxy is from the exact one.
                    eps = 2.0 ** -52
                    sum_error = 2.0 * (end - start + 2) * eps * sum_abs
                    proxy_error = 2.0 * (6.0 * largest_abs * sum_error + 5.0 * sum_error * sum_error
                                         + 4.0 * eps * abs(best[0]))
                    if best[4] > 0.0:
                        decided = best[6] + proxy_error < best[0]
                    else:
                        decided = best[0] - proxy_error > max(best[5], best[6] + proxy_error)
                if decided:
                    break
                # Too close to call from presorted orders: search this node again, sorting the
                # mixed features as sklearn does (same draws, same features order).
                state[0] = state_before
                features[:] = features_before
                total_constants = known_constants
                node_exact = True
                resorted[0] += 1
            best_pos = int(best[1])
            best_feature = int(best[3])
            threshold = best[2]
            improvement = -np.inf
            if best_pos < end:
                if base >= 0:
                    samples[start:end] = order[depth, base, start:end]
                for i in range(chain_length):
                    _sort_like_sklearn(codes_by_feature, chain[i], samples, values_buffer, start, end)
                # sklearn's partition_samples_final (the order of both children depends on it)
                column = codes_by_feature[best_feature]
                left, right = start, end
                while left < right:
                    if np.float64(column[samples[left]]) <= threshold:
                        left += 1
                    else:
                        right -= 1
                        samples[left], samples[right] = samples[right], samples[left]
                if best_pos - start <= end - best_pos:
                    sum_left = 0.0
                    weight_left = 0.0
                    for p in range(start, best_pos):
                        sum_left += target[samples[p]]
                        weight_left += 1.0
                else:
                    sum_left = sum_total
                    weight_left = weight
                    for p in range(end - 1, best_pos - 1, -1):
                        sum_left -= target[samples[p]]
                        weight_left -= 1.0
                weight_right = weight - weight_left
                sum_right = sum_total - sum_left
                sq_sum_left = 0.0
                for p in range(start, best_pos):
                    y = target[samples[p]]
                    sq_sum_left += y * y
                mean_left = sum_left / weight_left
                mean_right = sum_right / weight_right
                impurity_left = sq_sum_left / weight_left - mean_left * mean_left
                impurity_right = (sq_sum_total - sq_sum_left) / weight_right - mean_right * mean_right
                improvement = (weight / weight_samples) * (
                    impurity - weight_right / weight * impurity_right - weight_left / weight * impurity_left
                )
            # sklearn keeps known constants in their order for the children, then the new ones.
            for i in range(known_constants):
                features[i] = constant_features[i]
            for i in range(known_constants, total_constants):
                constant_features[i] = features[i]
            is_leaf = best_pos >= end or improvement + _TREE_EPSILON < 0.0

        node = node_count
        node_count += 1
        if parent >= 0:
            if is_left:
                node_left[parent] = node
            else:
                node_right[parent] = node
        node_impurity[node] = impurity
        node_weight[node] = weight
        node_left[node] = _LEAF
        node_right[node] = _LEAF
        if is_leaf:
            continue
        node_feature[node] = best_feature
        node_threshold[node] = threshold
        if depth + 1 < max_depth:
            for p in range(start, end):
                goes_left[samples[p]] = p < best_pos
            for i in range(total_constants, num_features):
                f = features[i]
                order_in, order_out = order[depth, f], order[depth + 1, f]
                values_in, values_out = sorted_values[depth, f], sorted_values[depth + 1, f]
                left, right = start, best_pos
                for p in range(start, end):
                    s = order_in[p]
                    to_left = goes_left[s]
                    # Branch-free: which child a sample goes to is a coin flip for the predictor.
                    destination = left if to_left else right
                    order_out[destination] = s
                    values_out[destination] = values_in[p]
                    left += to_left
                    right += 1 - to_left
        # Right child first: the stack pops the left one next, as sklearn's builder does.
        stack_start[top], stack_end[top], stack_depth[top] = best_pos, end, depth + 1
        stack_parent[top], stack_is_left[top] = node, False
        stack_impurity[top], stack_constants[top] = impurity_right, total_constants
        stack_start[top + 1], stack_end[top + 1], stack_depth[top + 1] = start, best_pos, depth + 1
        stack_parent[top + 1], stack_is_left[top + 1] = node, True
        stack_impurity[top + 1], stack_constants[top + 1] = impurity_left, total_constants
        top += 2
    return node_count


@njit(cache=True, nogil=True)
def _pairwise_sum(values, lo, n):
    """numpy's `np.sum` of a contiguous float64 array (pairwise, 8 accumulators), bit for bit."""
    if n < 8:
        total = 0.0
        for i in range(lo, lo + n):
            total += values[i]
        return total
    if n <= 128:
        r = values[lo:lo + 8].copy()
        i = 8
        stop = n - n % 8
        while i < stop:
            for j in range(8):
                r[j] += values[lo + i + j]
            i += 8
        total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        while i < n:
            total += values[lo + i]
            i += 1
        return total
    half = n // 2
    half -= half % 8
    return _pairwise_sum(values, lo, half) + _pairwise_sum(values, lo + half, n - half)


@njit(cache=True, nogil=True)
def _negative_gradient(labels, raw, out):
    """sklearn's half binomial / half multinomial loss gradients, negated."""
    n, trees = raw.shape
    if trees == 1:
        for i in range(n):
            y = float(labels[i])
            r = raw[i, 0]
            if r > -37:
                e = math.exp(-r)
                out[i, 0] = -(((1 - y) - y * e) / (1 + e))
            else:
                out[i, 0] = -(math.exp(r) - y)
        return
    p = np.empty(trees)
    for i in range(n):
        largest = raw[i, 0]
        for k in range(1, trees):
            if largest < raw[i, k]:
                largest = raw[i, k]
        sum_exps = 0.0
        for k in range(trees):
            p[k] = math.exp(raw[i, k] - largest)
            sum_exps += p[k]
        for k in range(trees):
            out[i, k] = -(p[k] / sum_exps - (1.0 if labels[i] == k else 0.0))


@njit(cache=True, nogil=True)
def _apply(X, i, feature, threshold, left, right):
    node = 0
    while left[node] != _LEAF:
        if np.float64(X[i, feature[node]]) <= threshold[node]:
            node = left[node]
        else:
            node = right[node]
    return node


@njit(cache=True, nogil=True)
def _update_leaves(X, labels, k, num_classes, negative_gradient, feature, threshold, left, right, value,
                   leaf_of, by_leaf, buffer):
    """sklearn's `_update_terminal_regions` for log loss: one Newton step per leaf, its sums taken
    over the leaf's samples in index order with numpy's pairwise summation."""
    n = X.shape[0]
    num_nodes = len(value)
    counts = np.zeros(num_nodes + 1, dtype=np.int64)
    for i in range(n):
        leaf_of[i] = _apply(X, i, feature, threshold, left, right)
        counts[leaf_of[i] + 1] += 1
    for node in range(num_nodes):
        counts[node + 1] += counts[node]
    fill = counts[:num_nodes].copy()
    for i in range(n):
        by_leaf[fill[leaf_of[i]]] = i
        fill[leaf_of[i]] += 1
    for node in range(num_nodes):
        lo, size = counts[node], counts[node + 1] - counts[node]
        if size == 0:
            continue
        for j in range(lo, lo + size):
            buffer[j] = negative_gradient[by_leaf[j], k]
        numerator = _pairwise_sum(buffer, lo, size) / float(size)
        for j in range(lo, lo + size):
            i = by_leaf[j]
            y = (1.0 if labels[i] == k else 0.0) if num_classes > 2 else float(labels[i])
            prob = y - negative_gradient[i, k]
            buffer[j] = prob * (1 - prob)
        denominator = _pairwise_sum(buffer, lo, size) / float(size)
        if num_classes > 2:
            numerator *= (num_classes - 1) / num_classes
        value[node] = 0.0 if abs(denominator) < 1e-150 else numerator / denominator


@njit(cache=True, nogil=True)
def _boost(X, labels, keys, num_classes, raw, root_order, root_sorted_values, uniquely_sorted, seeds,
           n_estimators, learning_rate, max_depth):
    """sklearn's `_fit_stages`: trees on the negative gradient, leaves by line search. `raw` (n, K)
    starts at the initial predictions and ends at the training set's raw predictions."""
    n, num_features = X.shape
    trees_per_stage = raw.shape[1]
    num_trees = n_estimators * trees_per_stage
    max_nodes = 2 ** (max_depth + 1) - 1
    feature = np.zeros((num_trees, max_nodes), dtype=np.int64)
    threshold = np.zeros((num_trees, max_nodes))
    left = np.full((num_trees, max_nodes), _LEAF, dtype=np.int64)
    right = np.full((num_trees, max_nodes), _LEAF, dtype=np.int64)
    value = np.zeros((num_trees, max_nodes))
    node_count = np.zeros(num_trees, dtype=np.int64)
    importances = np.zeros((num_trees, num_features))
    impurity = np.zeros(max_nodes)
    weight = np.zeros(max_nodes)
    order = np.empty((max_depth, num_features, n), dtype=np.int32)
    sorted_values = np.empty((max_depth, num_features, n), dtype=np.float32)
    order[0] = root_order
    sorted_values[0] = root_sorted_values
    samples = np.empty(n, dtype=np.int32)
    values_buffer = np.empty(n, dtype=np.float32)
    goes_left = np.empty(n, dtype=np.bool_)
    features = np.empty(num_features, dtype=np.int64)
    constant_features = np.empty(num_features, dtype=np.int64)
    chain = np.empty(num_features, dtype=np.int64)
    features_before = np.empty(num_features, dtype=np.int64)
    codes_by_feature = np.ascontiguousarray(X.T)
    negative_gradient = np.empty((n, trees_per_stage))
    target = np.empty(n)
    leaf_of = np.empty(n, dtype=np.int64)
    by_leaf = np.empty(n, dtype=np.int64)
    buffer = np.empty(n)
    inverse = 1.0 / np.arange(n + 1.0)
    resorted = np.zeros(1, dtype=np.int64)
    for stage in range(n_estimators):
        _negative_gradient(labels, raw, negative_gradient)
        for k in range(trees_per_stage):
            t = stage * trees_per_stage + k
            target[:] = negative_gradient[:, k]
            count = _grow_tree(codes_by_feature, target, keys, order, sorted_values, uniquely_sorted, seeds[t],
                               max_depth, inverse, samples, values_buffer, goes_left, features, constant_features,
                               features_before, chain, resorted, feature[t], threshold[t], left[t], right[t],
                               impurity, weight)
            node_count[t] = count
            # sklearn's compute_feature_importances(normalize=False), node by node in id order
            for node in range(count):
                if left[t, node] != _LEAF:
                    a, b = left[t, node], right[t, node]
                    importances[t, feature[t, node]] += (
                        weight[node] * impurity[node] - weight[a] * impurity[a] - weight[b] * impurity[b]
                    )
            for f in range(num_features):
                importances[t, f] /= weight[0]
            _update_leaves(X, labels, k, num_classes, negative_gradient, feature[t], threshold[t], left[t], right[t],
                           value[t], leaf_of, by_leaf, buffer)
            for i in range(n):
                raw[i, k] += learning_rate * value[t, leaf_of[i]]
    return feature, threshold, left, right, value, node_count, importances, resorted[0]


@njit(cache=True, nogil=True)
def _add_tree_predictions(X, feature, threshold, left, right, value, learning_rate, raw):
    """sklearn's `predict_stages`: stage by stage, class by class, add the scaled leaf values."""
    trees_per_stage = raw.shape[1]
    for t in range(feature.shape[0]):
        k = t % trees_per_stage
        for i in range(X.shape[0]):
            raw[i, k] += learning_rate * value[t, _apply(X, i, feature[t], threshold[t], left[t], right[t])]
