"""Loader workers and evaluate's rendering thread leave the cores to the model: one BLAS and one torch thread each."""

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from concept_diffusion.evaluation.code_cache import CodeCache
from concept_diffusion.training.data import batch_loader


def thread_counts() -> dict:
    """torch's intra-op threads and numpy's BLAS threads, as the calling thread sees them."""
    blas = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    if not blas:
        pytest.skip("numpy has no BLAS library that threadpoolctl can see")
    return {"torch": torch.get_num_threads(), "blas": max(blas)}


@pytest.fixture
def two_threads_each():
    """The main process with two torch and two BLAS threads, as a 2-core machine has by default."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    with threadpool_limits(limits=2, user_api="blas"):
        yield
    torch.set_num_threads(before)


class ThreadReport(torch.utils.data.Dataset):
    """Batches that say how many threads the process that made them may use."""

    def __len__(self):
        return 8

    def __getitem__(self, indices):
        return {"images": torch.zeros(len(indices), 3, 4, 4), **{name: torch.tensor(n) for name, n in thread_counts().items()}}


def test_each_loader_worker_uses_one_blas_and_one_torch_thread(two_threads_each):
    in_worker = next(iter(batch_loader(ThreadReport(), 4, seed=0, num_workers=1)))
    assert thread_counts() == {"torch": 2, "blas": 2}  # the main process keeps its threads
    assert (int(in_worker["torch"]), int(in_worker["blas"])) == (1, 1)


class RenderingReport:
    """A factor grid of blank images that records the threads of whoever renders them."""

    def __init__(self):
        self.seen = []

    def __len__(self):
        return 16

    def images(self, indices):
        self.seen.append(thread_counts())
        return np.zeros((len(indices), 2, 2, 3), dtype=np.float32)


def test_evaluate_renders_with_one_blas_and_one_torch_thread_beside_a_full_encoder(two_threads_each):
    data, encoder_threads = RenderingReport(), []

    def representation_fn(observations):
        encoder_threads.append(torch.get_num_threads())
        return np.zeros((len(observations), 2), dtype=np.float32)

    CodeCache(data, representation_fn, progress=False).prefetch(np.arange(16))
    assert data.seen == [{"torch": 1, "blas": 1}]
    assert encoder_threads == [2]  # the encoder, in the caller's thread, keeps its pool
    assert thread_counts() == {"torch": 2, "blas": 2}  # and numpy's BLAS is back once encoding ends


def test_on_a_gpu_the_main_process_keeps_the_cores_its_workers_leave(monkeypatch):
    from concept_diffusion.training.runtime import leave_cores_to_workers

    before = torch.get_num_threads()
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)), raising=False)
    try:
        torch.set_num_threads(16)
        assert leave_cores_to_workers("cpu", 12) == 16  # a CPU's main process runs the step: it keeps every thread
        assert leave_cores_to_workers("cuda", 0) == 16
        assert leave_cores_to_workers("cuda", 12) == 4 == torch.get_num_threads()
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two GPU processes on this node: 8 cores each
        assert leave_cores_to_workers("cuda", 12) == 1
    finally:
        torch.set_num_threads(before)
