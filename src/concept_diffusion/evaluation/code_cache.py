"""Encode each distinct image of a factor grid once: the codes of an `evaluate` call, cached by index.

disentanglement_lib renders and encodes every draw: about 2.9 M images for the six metrics at
their full sizes, although Shapes3D has 480,000 distinct images. Here a metric runs on
`IndexedObservations`, a view of the grid whose "observations" are image indices, drawn with the
same random calls in the same order as the images would be; its `representation_fn` is a
`CodeCache`, which looks the codes up by index and renders and encodes (in large sorted chunks)
only the images it has not seen.

The scores are then exactly the uncached ones as long as the representation is deterministic
and maps each image on its own: a model in eval mode (no dropout, batch norm from its running
statistics). `check_deterministic` refuses a representation that gives two different codes for
the same image, such as one that samples from a posterior.
"""

import numpy as np

from concept_diffusion.evaluation.sampling import check_codes

# Images rendered and handed to the representation at once: large enough for an accelerator,
# small enough for 64x64 RGB float images in memory (2,048 of them: 100 MB).
RENDER_CHUNK = 2048


class IndexedObservations:
    """A factor grid whose observations are image indices (int64, shape (n,)).

    Draws exactly what the grid itself draws from a `random_state` (`sample_factors`, and
    `sample_indices_from_factors` where an image is picked among several), so a metric run on it
    sees the factors and the images it would see on the grid.
    """

    def __init__(self, data):
        self.data = data
        self.factor_names = data.factor_names
        self.factor_sizes = data.factor_sizes
        self.num_factors = data.num_factors
        self.has_factor_grid = True

    def __repr__(self) -> str:
        return f"IndexedObservations({self.data!r})"

    def sample_factors(self, num, random_state):
        return self.data.sample_factors(num, random_state)

    def sample_observations_from_factors(self, factors, random_state):
        return self.data.sample_indices_from_factors(factors, random_state)

    def sample(self, num, random_state):
        factors = self.sample_factors(num, random_state)
        return factors, self.sample_observations_from_factors(factors, random_state)


class CodeCache:
    """`representation_fn` over image indices: each image is rendered and encoded at most once.

    `cache(indices)` returns the codes (n, d) of the images at `indices`; `prefetch(indices)`
    encodes the distinct unseen ones among them, in sorted chunks of `RENDER_CHUNK`, with a
    progress bar (images/s and time left). `num_encoded` counts the images encoded so far.

    Example:
        >>> cache = CodeCache(data, representation_fn)
        >>> cache.prefetch(all_indices_a_metric_will_draw)
        >>> codes = cache(np.array([0, 5, 0]))      # image 0 encoded once
    """

    def __init__(self, data, representation_fn, progress=True):
        self.data = data
        self.representation_fn = representation_fn
        self.progress = progress
        self._known = np.zeros(len(data), dtype=bool)
        self._codes = None
        self.num_encoded = 0

    def __call__(self, indices):
        indices = np.asarray(indices, dtype=np.int64)
        self.prefetch(indices)
        return self._codes[indices]

    def prefetch(self, indices):
        """Render and encode the images at `indices` (any order, repeats allowed) not encoded yet.

        The next chunk is rendered in a thread while the current one is encoded: rendering is
        numpy and encoding torch, both of which release the GIL. The thread renders with one BLAS
        and one torch thread (`rendering_thread`), so that it does not crowd the encoder's.
        """
        from tqdm.auto import tqdm

        from concept_diffusion.data.threads import rendering_thread

        needed = np.unique(np.asarray(indices, dtype=np.int64))
        needed = needed[~self._known[needed]]
        if not needed.size:
            return
        chunks = [needed[start : start + RENDER_CHUNK] for start in range(0, needed.size, RENDER_CHUNK)]
        show = self.progress and len(chunks) > 1
        with tqdm(total=int(needed.size), desc="encoding distinct images", unit="img", unit_scale=True,
                  disable=not show, leave=False) as bar, rendering_thread() as renderer:
            images = renderer.submit(self.data.images, chunks[0])
            for number, chunk in enumerate(chunks):
                observations = images.result()
                if number + 1 < len(chunks):
                    images = renderer.submit(self.data.images, chunks[number + 1])
                self._store(chunk, check_codes(self.representation_fn(observations), len(chunk)))
                bar.update(len(chunk))

    def _store(self, indices, codes):
        if self._codes is None:
            self._codes = np.empty((len(self.data), codes.shape[1]), dtype=codes.dtype)
        self._codes[indices] = codes
        self._known[indices] = True
        self.num_encoded += len(indices)


def check_deterministic(data, representation_fn, num_images=8):
    """Raise a ValueError unless `representation_fn` gives the same codes for the same images twice.

    The cache is exact only for a deterministic representation; the tolerance (1e-5 of the codes'
    scale) admits the last-bit noise of some accelerator kernels, not a sampled code.
    """
    indices = np.arange(min(num_images, len(data)), dtype=np.int64)
    images = data.images(indices)
    first = check_codes(representation_fn(images), len(indices))
    second = check_codes(representation_fn(images), len(indices))
    scale = max(float(np.max(np.abs(first))), 1e-12)
    difference = float(np.max(np.abs(first.astype(np.float64) - second)))
    if difference > 1e-5 * scale:
        raise ValueError(
            f"the representation is stochastic: the same {len(indices)} images gave codes differing by up to "
            f"{difference:.3g} on two calls. evaluate's code cache (each distinct image encoded once) is exact only "
            "for a deterministic representation, such as a model in eval mode; return the mean instead of a sample, "
            "or pass cache=False to encode every draw anew, as disentanglement_lib does."
        )
