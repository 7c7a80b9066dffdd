"""The local Hub-compatible server, driven by plain huggingface_hub and datasets (no package code)."""

import hashlib

import httpx2
import pytest
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)


@pytest.fixture
def api(hub_server):
    return HfApi(endpoint=hub_server.endpoint, token=hub_server.token)


def _folder(tmp_path):
    folder = tmp_path / "upload"
    (folder / "sub" / "deeper").mkdir(parents=True)
    (folder / "config.json").write_text('{"a": 1}')
    (folder / "sub" / "notes.txt").write_text("hello")
    (folder / "sub" / "deeper" / "weights.safetensors").write_bytes(b"\0\1" * 3000)
    return folder


def test_whoami_and_token(api, hub_server):
    assert api.whoami()["name"] == hub_server.user
    with pytest.raises(HfHubHTTPError) as error:
        HfApi(endpoint=hub_server.endpoint, token="hf_wrong").whoami()
    assert error.value.response.status_code == 401


def test_create_upload_list_download(api, hub_server, hub_repo_id, tmp_path):
    url = api.create_repo(hub_repo_id)
    assert url.repo_id == hub_repo_id
    api.create_repo(hub_repo_id, exist_ok=True)
    with pytest.raises(HfHubHTTPError):
        api.create_repo(hub_repo_id)  # 409

    info = api.upload_folder(repo_id=hub_repo_id, folder_path=_folder(tmp_path), commit_message="first")
    assert set(api.list_repo_files(hub_repo_id)) == {
        ".gitattributes", "config.json", "sub/notes.txt", "sub/deeper/weights.safetensors"}
    commits = api.list_repo_commits(hub_repo_id)
    assert [c.title for c in commits] == ["first", "initial commit"]
    assert commits[0].commit_id == info.oid

    model = api.model_info(hub_repo_id, files_metadata=True)
    assert model.sha == info.oid
    weights = next(s for s in model.siblings if s.rfilename.endswith(".safetensors"))
    assert weights.lfs is not None and weights.lfs.sha256 == hashlib.sha256(b"\0\1" * 3000).hexdigest()
    notes = next(s for s in model.siblings if s.rfilename == "sub/notes.txt")
    assert notes.lfs is None and notes.size == 5

    path = hf_hub_download(hub_repo_id, "sub/deeper/weights.safetensors")
    assert open(path, "rb").read() == b"\0\1" * 3000
    snapshot = snapshot_download(hub_repo_id, local_dir=tmp_path / "snapshot")
    assert (tmp_path / "snapshot" / "sub" / "notes.txt").read_text() == "hello"
    assert snapshot == str(tmp_path / "snapshot")


def test_revisions_and_branches(api, hub_repo_id):
    api.create_repo(hub_repo_id)
    first = api.upload_file(path_or_fileobj=b"v1", path_in_repo="x.txt", repo_id=hub_repo_id).oid
    api.upload_file(path_or_fileobj=b"v2", path_in_repo="x.txt", repo_id=hub_repo_id)
    assert open(hf_hub_download(hub_repo_id, "x.txt", revision=first), "rb").read() == b"v1"
    assert open(hf_hub_download(hub_repo_id, "x.txt"), "rb").read() == b"v2"
    assert api.model_info(hub_repo_id, revision=first).sha == first

    api.create_branch(hub_repo_id, branch="v0.1", revision=first)
    api.create_branch(hub_repo_id, branch="v0.1", exist_ok=True)
    assert open(hf_hub_download(hub_repo_id, "x.txt", revision="v0.1"), "rb").read() == b"v1"
    assert {b.name for b in api.list_repo_refs(hub_repo_id).branches} == {"main", "v0.1"}
    with pytest.raises(RevisionNotFoundError):
        api.model_info(hub_repo_id, revision="no-such-branch")


def test_tree_pagination_expand_and_missing_path(api, hub_server, hub_repo_id, tmp_path, monkeypatch):
    api.create_repo(hub_repo_id)
    api.upload_folder(repo_id=hub_repo_id, folder_path=_folder(tmp_path))
    monkeypatch.setattr(hub_server, "tree_page_size", 2)
    before = len(hub_server.requests)
    entries = list(api.list_repo_tree(hub_repo_id, recursive=True))
    pages = [r for r in hub_server.requests[before:] if r[1] == "tree"]
    assert len(pages) == 3  # 6 entries, 2 per page
    assert {e.path for e in entries} == {
        ".gitattributes", "config.json", "sub", "sub/notes.txt", "sub/deeper", "sub/deeper/weights.safetensors"}
    top = {e.path for e in api.list_repo_tree(hub_repo_id, path_in_repo="sub")}
    assert top == {"sub/notes.txt", "sub/deeper"}
    expanded = list(api.list_repo_tree(hub_repo_id, path_in_repo="sub", expand=True))
    assert all(e.last_commit is not None for e in expanded)
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(hub_repo_id, path_in_repo="missing"))
    infos = api.get_paths_info(hub_repo_id, ["config.json", "sub", "missing"])
    assert [i.path for i in infos] == ["config.json", "sub"]


def test_commit_operations_and_lfs_threshold(api, hub_server, hub_repo_id, monkeypatch):
    api.create_repo(hub_repo_id)
    monkeypatch.setattr(hub_server, "lfs_threshold", 100)
    api.create_commit(hub_repo_id, commit_message="two files", operations=[
        CommitOperationAdd("big.txt", b"a" * 200), CommitOperationAdd("small.txt", b"b" * 10)])
    files = {f.path: f for f in api.list_repo_tree(hub_repo_id)}
    assert files["big.txt"].lfs is not None and files["small.txt"].lfs is None
    api.create_commit(hub_repo_id, commit_message="delete", operations=[CommitOperationDelete("big.txt")])
    assert "big.txt" not in api.list_repo_files(hub_repo_id)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(hub_repo_id, "big.txt")


def test_resolve_head_and_range(hub_server, hub_repo_id, api):
    api.create_repo(hub_repo_id)
    sha = api.upload_file(path_or_fileobj=b"0123456789", path_in_repo="digits.txt", repo_id=hub_repo_id).oid
    url = f"{hub_server.endpoint}/{hub_repo_id}/resolve/main/digits.txt"
    headers = {"Authorization": f"Bearer {hub_server.token}"}
    head = httpx2.head(url, headers=headers)
    assert head.headers["X-Repo-Commit"] == sha
    assert head.headers["ETag"] and head.headers["Content-Length"] == "10"
    part = httpx2.get(url, headers={**headers, "Range": "bytes=2-4"})
    assert part.status_code == 206 and part.content == b"234"
    assert httpx2.get(url).status_code == 401


def test_unknown_repo_and_bad_token(hub_server, hub_repo_id, api):
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(hub_repo_id)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(hub_repo_id, "config.json")
    api.create_repo(hub_repo_id)
    with pytest.raises(HfHubHTTPError) as error:
        HfApi(endpoint=hub_server.endpoint, token="hf_wrong").upload_file(
            path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=hub_repo_id)
    assert error.value.response.status_code == 401


def test_validate_yaml(api, hub_repo_id):
    api.create_repo(hub_repo_id)
    api.upload_file(path_or_fileobj=b"---\nlicense: mit\ntags:\n- a\n---\n# Card\n", path_in_repo="README.md",
                    repo_id=hub_repo_id)
    with pytest.raises(ValueError, match="not closed"):
        api.upload_file(path_or_fileobj=b"---\nlicense: mit\n# Card\n", path_in_repo="README.md", repo_id=hub_repo_id)


def test_server_gone_mid_upload(api, hub_server, hub_repo_id, tmp_path):
    api.create_repo(hub_repo_id)
    hub_server.fail_next_upload()
    with pytest.raises((httpx2.TransportError, OSError)):
        api.upload_folder(repo_id=hub_repo_id, folder_path=_folder(tmp_path))
    assert not hub_server.running
    with pytest.raises(httpx2.TransportError):  # refused, or reset on a kept-alive connection
        api.whoami(cache=False)
    hub_server.start()
    assert api.list_repo_files(hub_repo_id) == [".gitattributes"]  # nothing of the failed commit landed


def test_connection_reset_on_commit(api, hub_server, hub_repo_id):
    api.create_repo(hub_repo_id)
    hub_server.fail_next("commit", "reset")
    with pytest.raises((httpx2.TransportError, OSError)):
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=hub_repo_id)
    assert hub_server.running
    api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=hub_repo_id)
    assert "x.txt" in api.list_repo_files(hub_repo_id)


def test_datasets_push_and_load(hub_server, hub_repo_id, tmp_path):
    import numpy as np
    from datasets import Dataset, Features, Image, Value, load_dataset

    images = [np.full((4, 4, 3), i * 40, dtype=np.uint8) for i in range(3)]
    features = Features({"image": Image(), "shape": Value("int64")})
    data = Dataset.from_dict({"image": images, "shape": [0, 1, 2]}, features=features)
    data.push_to_hub(hub_repo_id, commit_message="data")
    assert HfApi().dataset_info(hub_repo_id).sha is not None

    loaded = load_dataset(hub_repo_id, split="train", cache_dir=str(tmp_path / "cache"))
    assert loaded["shape"] == [0, 1, 2]
    assert np.asarray(loaded[2]["image"]).tolist() == images[2].tolist()
