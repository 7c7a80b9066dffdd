"""Every example notebook runs top to bottom in fast mode, as CI runs it: no network, any cell error fails.

nbclient executes each notebook in a fresh ipykernel, with the working folder at examples/ (as on Colab after the
install cell) and the environment of this process: conftest.py has pointed HF_ENDPOINT and HF_TOKEN at the local
Hub test server, which notebook 04 pushes to and pulls from.
"""

import os
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
# "full" runs the notebooks as a Colab user would (minutes to hours each), for a one-off check by hand:
# CONCEPT_DIFFUSION_NOTEBOOK_TEST_MODE=full python -m pytest -s tests/test_notebooks.py -k 01
MODE = os.environ.get("CONCEPT_DIFFUSION_NOTEBOOK_TEST_MODE", "fast")
if MODE not in ("fast", "full"):
    raise ValueError(f"CONCEPT_DIFFUSION_NOTEBOOK_TEST_MODE must be 'fast' or 'full', got {MODE!r}")
# Per cell. A fast-mode notebook takes about a minute on 2 free cores; the margin is for a busy machine.
CELL_TIMEOUT = 600 if MODE == "fast" else 4 * 3600


@pytest.mark.timeout(2 * CELL_TIMEOUT)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, hub_server, tmp_path, monkeypatch):
    monkeypatch.setenv("CONCEPT_DIFFUSION_NOTEBOOK_MODE", MODE)
    monkeypatch.setenv("CONCEPT_DIFFUSION_NOTEBOOK_OUTPUT", str(tmp_path / "outputs"))
    # No network: any HTTP(S) request that is not to the local test Hub goes to a closed port and fails.
    for variable in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(EXAMPLES)}})
    started = time.monotonic()
    try:
        client.execute()
    except CellExecutionError as error:  # the message names the cell and holds its traceback
        pytest.fail(f"{path.name} failed in {MODE} mode:\n{error}", pytrace=False)
    print(f"{path.name}, {MODE} mode: {time.monotonic() - started:.0f} s")

    images = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])
              if "image/png" in output.get("data", {})]
    assert images, f"{path.name} showed no picture in {MODE} mode"
    assert any((tmp_path / "outputs").iterdir()), f"{path.name} wrote nothing into its OUTPUT_DIR"
