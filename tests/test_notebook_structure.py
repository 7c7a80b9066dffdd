"""The example notebooks have the shape Colab users rely on: badge, guarded install, device, parameters, no outputs."""

import copy
import re
import tomllib
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
EXPECTED = [
    "01_load_and_edit.ipynb",
    "02_train.ipynb",
    "03_evaluate.ipynb",
    "04_share_on_the_hub.ipynb",
    "05_your_own_images.ipynb",
]
MODE_VARIABLE = "CONCEPT_DIFFUSION_NOTEBOOK_MODE"
# A quoted absolute path: "/home/...", '/tmp/...', "C:\\...", "~/..."
ABSOLUTE_PATH = re.compile(r"""["'](/(?!/)[^"'\s]*|[A-Za-z]:\\[^"']*|~/[^"']*)["']""")
# Hugging Face tokens (hf_ + 30 or more letters) and other obvious secrets.
TOKEN = re.compile(r"\bhf_[A-Za-z0-9]{30,}\b|(?i:token\s*=\s*[\"'][A-Za-z0-9_\-]{16,}[\"'])")


def repository() -> str:
    """owner/name of the GitHub repository, from pyproject.toml's Homepage."""
    with open(ROOT / "pyproject.toml", "rb") as file:
        homepage = tomllib.load(file)["project"]["urls"]["Homepage"]
    match = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+)/?", homepage)
    assert match, f"Homepage {homepage!r} is not a GitHub repository URL"
    return match.group(1)


def problems(notebook, relative_path: str, repo: str) -> list:
    """What is wrong with a notebook's structure; empty when it is right."""
    found = []
    cells = notebook.cells
    code = [cell for cell in cells if cell.cell_type == "code"]
    badge = f"https://colab.research.google.com/github/{repo}/blob/main/{relative_path}"
    if not cells or cells[0].cell_type != "markdown" or f"]({badge})" not in cells[0].source:
        found.append(f"the first cell is not a markdown cell with the Colab badge linking to {badge}")
    if not code or '"google.colab" in sys.modules' not in code[0].source or "pip" not in code[0].source:
        found.append("the first code cell is not the install cell guarded by '\"google.colab\" in sys.modules'")
    elif re.search(r"\btorch\s*(==|>=|<=|~=|<|>)", code[0].source) or re.search(r"[\"']torch[\"']", code[0].source):
        found.append("the install cell installs or pins torch: Colab's own torch must stay")
    elif f"https://github.com/{repo}" not in code[0].source:
        found.append(f"the install cell does not install from https://github.com/{repo}")
    if len(code) < 2 or "torch.cuda.is_available()" not in code[1].source or "Change runtime type" not in code[1].source:
        found.append("the second code cell does not pick the GPU and tell Colab users how to turn one on")
    tagged = [cell for cell in cells if "parameters" in cell.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1 or tagged[0].cell_type != "code":
        found.append(f"expected one code cell tagged 'parameters', found {len(tagged)}")
    elif not re.search(rf"os\.environ\.get\(\"{MODE_VARIABLE}\", \"full\"\)", tagged[0].source):
        found.append(f"the parameters cell does not read {MODE_VARIABLE} with 'full' as default")
    for index, cell in enumerate(cells):
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None):
            found.append(f"cell {index} has stored outputs or an execution count: clear them before committing")
        if ABSOLUTE_PATH.search(cell.source):
            found.append(f"cell {index} has an absolute path: {ABSOLUTE_PATH.search(cell.source).group(0)}")
        if TOKEN.search(cell.source):
            found.append(f"cell {index} has what looks like a hard-coded token")
    return found


def test_the_five_notebooks_are_there():
    assert [path.name for path in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_structure(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    assert problems(notebook, path.relative_to(ROOT).as_posix(), repository()) == []


def test_structure_check_finds_each_problem():
    """Each rule fires on a notebook broken in its way (so the test above can fail)."""
    path = EXAMPLES / EXPECTED[0]
    good = nbformat.read(path, as_version=4)
    relative, repo = path.relative_to(ROOT).as_posix(), repository()
    code = [i for i, cell in enumerate(good.cells) if cell.cell_type == "code"]

    def broken(edit):
        notebook = copy.deepcopy(good)
        edit(notebook)
        return " | ".join(problems(notebook, relative, repo))

    assert "Colab badge" in broken(lambda nb: nb.cells[0].update(source="# no badge"))
    assert problems(good, relative, repo) == []
    assert "Colab badge" in " | ".join(problems(good, "examples/renamed.ipynb", repo))  # the badge follows the path
    assert "install cell" in broken(lambda nb: nb.cells.pop(code[0]))
    assert "pins torch" in broken(lambda nb: nb.cells[code[0]].update(source=nb.cells[code[0]].source.replace(
        '"-q", ', '"-q", "torch==2.1.0", ')))
    assert "GPU" in broken(lambda nb: nb.cells.pop(code[1]))
    assert "tagged 'parameters'" in broken(lambda nb: [cell.metadata.pop("tags", None) for cell in nb.cells])
    assert "with 'full' as default" in broken(lambda nb: [cell.update(source=cell.source.replace('"full")', '"fast")'))
                                                         for cell in nb.cells])
    output = nbformat.v4.new_output("stream", text="hello")
    assert "stored outputs" in broken(lambda nb: nb.cells[code[2]].update(outputs=[output]))
    assert "stored outputs" in broken(lambda nb: nb.cells[code[2]].update(execution_count=3))
    assert "absolute path" in broken(lambda nb: nb.cells.append(nbformat.v4.new_code_cell('open("/home/me/data.csv")')))
    assert "hard-coded token" in broken(lambda nb: nb.cells.append(nbformat.v4.new_code_cell(
        'login("hf_' + "a" * 34 + '")')))
