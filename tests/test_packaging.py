"""The package as users install it: a wheel and an sdist that build and pass `twine check`, a wheel
that runs the quickstart from a fresh virtual environment (so presets and cards are package data),
and the scikit-learn range that DCI's exact trees hold for."""

import os
import re
import site
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, command))}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """The wheel and sdist of this checkout, built without network (`--no-isolation`: the installed setuptools)."""
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)], timeout=300)
    return out


def test_wheel_and_sdist_pass_twine_check(dist):
    files = sorted(dist.iterdir())
    assert sorted(path.suffix for path in files) == [".gz", ".whl"]
    assert "PASSED" in run([sys.executable, "-m", "twine", "check", "--strict", *map(str, files)], timeout=120).stdout


def test_wheel_runs_the_quickstart_in_a_fresh_venv(dist, tmp_path):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=120)
    python = venv / "bin" / "python"
    # The dependencies come from this environment (no network for torch): its site-packages folders are
    # put on the venv's path by a .pth file, which adds them after the venv's own and does not run the
    # .pth files inside them, so the editable install of the checkout stays invisible.
    venv_site = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    outer = [path for path in (*site.getsitepackages(), site.getusersitepackages()) if os.path.isdir(path)]
    Path(venv_site, "_dependencies.pth").write_text("\n".join(outer) + "\n")
    wheel = next(dist.glob("*.whl"))
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "--ignore-installed", "--quiet", str(wheel)],
        timeout=300)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    where = run([str(python), "-c", "import concept_diffusion; print(concept_diffusion.__file__)"], cwd=tmp_path, env=env)
    assert where.stdout.strip().startswith(str(venv)), where.stdout  # not the editable checkout
    out = tmp_path / "qs"
    command = [str(venv / "bin" / "concept-diffusion"), "quickstart", "--out", str(out), "--max-steps", "2", "--batch-size", "4",
               "--sample-steps", "1", "--score-samples", "64", "--fast-scores", "--minutes", "5"]
    result = run(command, cwd=tmp_path, env=env, timeout=600)
    assert "factor_vae.eval_accuracy" in result.stdout
    for name in ("pipeline/model_index.json", "pipeline/README.md", "metrics.json", "swap.png", "traversal.png", "curves.png"):
        assert (out / name).is_file(), name
    assert "encdiff" in (out / "pipeline" / "README.md").read_text()  # rendered from the packaged card template


def test_scikit_learn_pin_matches_the_exact_trees():
    from concept_diffusion.evaluation.gbt import EXACT_SKLEARN_MINOR, installed_sklearn_is_exact

    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pin = next(spec for spec in dependencies if spec.startswith("scikit-learn"))
    major, minor = EXACT_SKLEARN_MINOR
    assert re.fullmatch(rf"scikit-learn>={major}\.{minor},<{major}\.{minor + 1}", pin), pin
    assert installed_sklearn_is_exact()


def test_dci_falls_back_to_sklearn_trees_on_another_sklearn(monkeypatch):
    import sklearn

    from concept_diffusion.evaluation.dci import dci_from_codes

    rng = np.random.RandomState(0)
    factors = rng.randint(0, 3, size=(60, 2))
    codes = factors + 0.3 * rng.randn(60, 2)
    args = (codes[:40], factors[:40], codes[40:], factors[40:])
    reference = dci_from_codes(*args, estimator_random_state=np.random.RandomState(1), backend="sklearn")
    monkeypatch.setattr(sklearn, "__version__", "1.10.0")
    with pytest.warns(UserWarning, match=r"scikit-learn 1\.10\.0 is installed: using backend='sklearn'"):
        fallback = dci_from_codes(*args, estimator_random_state=np.random.RandomState(1), backend="numba")
    assert fallback == reference  # the same estimator, seeds and data: the bits are the point
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dci_from_codes(*args, estimator_random_state=np.random.RandomState(1), backend="sklearn")  # asked for: no warning


def test_fast_dci_names_a_changed_sklearn_layout():
    from types import SimpleNamespace

    from concept_diffusion.evaluation.dci import _split_gains

    fitted = SimpleNamespace(_predictors=[[SimpleNamespace(nodes=np.zeros(3, dtype=[("is_leaf", "u1"), ("gain", "f8")]))]])
    with pytest.raises(RuntimeError, match="_predictors.*fast=False"):  # a tree layout without feature_idx
        _split_gains(fitted, num_codes=2)
    with pytest.raises(RuntimeError, match="_predictors"):
        _split_gains(SimpleNamespace(), num_codes=2)  # no private attribute at all
