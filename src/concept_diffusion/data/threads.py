"""How rendering shares the cores with the model: one BLAS and one torch thread per loader worker and
per rendering thread.

numpy's BLAS (OpenBLAS) and torch's intra-op pool each size themselves to every core, in every
process. A loader with 12 workers on a 16-core machine then runs about 200 such threads beside the
main process, whose job on a GPU is to queue the step's kernels on time: a thread of its own
descheduled for a few milliseconds stalls the device for as long. Rendering or reading a batch is
one thread's work (numpy on arrays of a few MB), so each worker, and `evaluate`'s rendering thread,
gets one thread of each.
"""

import contextlib
from concurrent.futures import ThreadPoolExecutor

import torch


def one_thread_per_worker(worker_id: int = 0) -> None:
    """`worker_init_fn` of the package's DataLoaders: this worker's BLAS, OpenMP and torch use one thread each.

    Example:
        >>> DataLoader(dataset, num_workers=4, worker_init_fn=one_thread_per_worker)
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)  # every BLAS and OpenMP library loaded in this process, for its lifetime
    torch.set_num_threads(1)


@contextlib.contextmanager
def rendering_thread():
    """A one-thread executor that renders beside the caller's model, with one BLAS and one torch thread.

    numpy's BLAS pool is process-wide: it is limited to one thread for the duration of the block (the
    caller runs torch meanwhile, not numpy's BLAS); the thread's own torch pool is limited inside it.
    Both are as before once the block ends.

    Example:
        >>> with rendering_thread() as renderer:
        ...     images = renderer.submit(data.images, indices)
    """
    from threadpoolctl import threadpool_limits

    caller_threads = torch.get_num_threads()  # also fixes the caller's own pool before the thread resets torch's default
    try:
        with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(1, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            yield pool
    finally:
        torch.set_num_threads(caller_threads)  # the thread's call also lowered the default that new threads start from
