import json
import os

import pytest

from concept_diffusion.atomic import atomic_directory, atomic_path, write_json


def test_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "scores.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            with open(temporary, "w") as file:
                file.write("{half")
            raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["scores.json"]


def test_atomic_directory_replaces_the_whole_folder_only_on_success(tmp_path):
    target = tmp_path / "pipeline"
    with atomic_directory(target) as staging:
        open(os.path.join(staging, "old.txt"), "w").close()
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as staging:
            open(os.path.join(staging, "new.txt"), "w").close()
            raise RuntimeError("crash mid-save")
    assert os.listdir(target) == ["old.txt"]
    with atomic_directory(target) as staging:
        open(os.path.join(staging, "new.txt"), "w").close()
    assert os.listdir(target) == ["new.txt"]
    assert os.listdir(tmp_path) == ["pipeline"]
