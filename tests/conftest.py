"""Test setup. The environment is set before any Hugging Face library is imported: they read
HF_ENDPOINT, HF_HOME, HF_TOKEN and HF_HUB_DISABLE_XET at import time. No test touches the network:
HF_ENDPOINT points at the local Hub-compatible server of tests/hub_server.py."""

import os
import socket
import tempfile


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


HUB_PORT = _free_port()
HUB_ENDPOINT = f"http://127.0.0.1:{HUB_PORT}"
HUB_TOKEN = "hf_concept_diffusion_test_token"
_HF_HOME = tempfile.mkdtemp(prefix="cd-test-hf-home-")

os.environ["HF_ENDPOINT"] = HUB_ENDPOINT
os.environ["HF_TOKEN"] = HUB_TOKEN
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
os.environ.pop("HF_HUB_OFFLINE", None)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def hub_server(tmp_path_factory):
    """The local Hub-compatible server (tests/hub_server.py) on HUB_ENDPOINT, with fresh storage.

    Yields the `HubServer`: `.endpoint`, `.token`, `.user`, `.root` (storage folder), `.requests`,
    `.fail_next(route, mode)`, `.fail_next_upload()`, `.stop()` / `.start()`. A test that stops
    the server or leaves a failure armed gets it restarted and cleared afterwards.
    """
    from hub_server import HubServer

    # datasets asks the dataset viewer (another host) for parquet exports of Hub datasets; the
    # test Hub has none, and no test may try to reach another host.
    import datasets.config

    datasets.config.USE_PARQUET_EXPORT = False

    server = HubServer(root=tmp_path_factory.mktemp("hub"), port=HUB_PORT, token=HUB_TOKEN).start()
    assert server.endpoint == HUB_ENDPOINT
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _restore_hub_server(request):
    yield
    if "hub_server" in request.fixturenames:
        server = request.getfixturevalue("hub_server")
        server.clear_failures()
        server.start()


@pytest.fixture
def hub_repo_id(request, hub_server):
    """A repo id that no other test uses: `<user>/<test name>-<random>`."""
    import re
    import secrets

    name = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:60].strip("-.")
    return f"{hub_server.user}/{name}-{secrets.token_hex(3)}"


# Python with `concept_diffusion` made unimportable, as for a user who has only diffusers.
_BLOCK_PACKAGE = """
import sys

class BlockConceptDiffusion:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "concept_diffusion":
            raise ImportError("concept_diffusion is not installed here")

sys.meta_path.insert(0, BlockConceptDiffusion())
"""


@pytest.fixture
def run_without_package():
    """Run a Python script in a subprocess where concept_diffusion cannot be imported; returns the finished process."""
    import subprocess
    import sys
    import textwrap

    def run(script: str, timeout: int = 240):
        return subprocess.run([sys.executable, "-c", _BLOCK_PACKAGE + textwrap.dedent(script)], capture_output=True,
                              text=True, timeout=timeout)

    return run


@pytest.fixture(scope="module")
def pipe():
    """The tiny preset's pipeline (seed 0), progress bars off; a test module may define its own."""
    from concept_diffusion import build_pipeline

    pipe = build_pipeline("tiny", seed=0)
    pipe.set_progress_bar_config(disable=True)
    return pipe


SHIPPED_MODEL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "models",
                             "encdiff-shapes3d-procedural")


def shipped_concept(factor: str) -> int:
    """The shipped model's concept that carries `factor` most (normalised MI in its concept_factor_map.json), so that
    tests editing a hue keep working when the model is retrained and its concepts come out in another order."""
    import json

    with open(os.path.join(SHIPPED_MODEL, "concept_factor_map.json")) as file:
        concept_map = json.load(file)
    column = concept_map["factors"].index(factor)
    return max(range(len(concept_map["normalised_mutual_information"])),
               key=lambda concept: concept_map["normalised_mutual_information"][concept][column])


@pytest.fixture(scope="module")
def shipped_pipe():
    """The trained model we ship (examples/models/, 10 concepts, 32x32, pixel space), progress bars off.

    Its concepts carry the hues, so moving one visibly changes its images on any CPU. Use it where a test needs
    an edit to show: an untrained model barely reads its concepts, and whether its 8-bit output moves at all
    depends on the CPU's float bits.
    """
    from concept_diffusion import ConceptDiffusionPipeline

    pipe = ConceptDiffusionPipeline.from_pretrained(SHIPPED_MODEL)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def images():
    """Three random 32x32 RGB images, numpy (B, H, W, C) in [0, 1]."""
    import numpy as np

    return np.random.RandomState(0).rand(3, 32, 32, 3).astype(np.float32)

