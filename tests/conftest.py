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


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)
