"""A Hugging Face Hub-compatible HTTP server for tests, standard library only.

It answers the endpoints that huggingface_hub 2.x, diffusers and datasets call to create repos,
commit files (regular and LFS), list and download them, so that pushing and pulling can be tested
without a network. It is a test double, not a Hub: one user, one token, no pull requests, no Xet.
Every request needs the token (else 401), except validate-yaml and the pre-signed LFS upload URLs;
an unknown repo is a 404 with `X-Error-Code: RepoNotFound`.

Storage, under `root`, one folder per repo (`models/user/name`, `datasets/user/name`):

    repo.json              {"private": ..., "created_at": ..., "refs": {"main": "<sha>"}}
    commits/<sha>.json     one repo state: parent, title, message, date and every file's
                           size, git oid and LFS info
    objects/<git oid>      content of regular files
    lfs/<sha256>           content of LFS files, as uploaded through the LFS batch API

Failures can be simulated: `fail_next(route, mode)` drops the next request to a route (connection
reset), answers it with a 500, or takes the whole server down as if it vanished mid-upload;
`stop()` / `start()` take it down and bring it back on the same port.

Example:
    server = HubServer(root="/tmp/hub", port=8123, token="hf_test").start()
    os.environ["HF_ENDPOINT"] = server.endpoint   # before huggingface_hub is imported
    ...
    server.stop()
"""

import base64
import datetime
import fnmatch
import hashlib
import hmac
import json
import os
import re
import secrets
import socket
import struct
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

REPO_TYPES = ("model", "dataset", "space")
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}

# The patterns of the .gitattributes that the Hub writes into every new repo (abridged): files that
# match go through LFS whatever their size.
DEFAULT_LFS_PATTERNS = (
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.gz", "*.h5", "*.joblib", "*.msgpack",
    "*.npy", "*.npz", "*.onnx", "*.parquet", "*.pickle", "*.pkl", "*.pt", "*.pth", "*.safetensors",
    "*.tar", "*.tflite", "*.tgz", "*.xz", "*.zip", "*.zst", "*tfevents*",
)
FAILURE_MODES = ("reset", "500", "stop")
ROUTES = (
    "whoami", "create", "delete", "validate-yaml", "info", "tree", "paths-info", "preupload",
    "commit", "commits", "refs", "branch", "lfs-batch", "lfs-upload", "resolve",
)


class HubError(Exception):
    """An HTTP error answer, with the `X-Error-Code` the Hub sends (RepoNotFound, ...)."""

    def __init__(self, status, message, error_code=None, headers=None, payload=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code
        self.headers = headers or {}
        self.payload = payload or {}


def git_blob_oid(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class Repo:
    """One repo folder: refs, commits and content-addressed objects."""

    def __init__(self, root: Path, repo_type: str, repo_id: str):
        self.type = repo_type
        self.id = repo_id
        self.path = root / f"{repo_type}s" / repo_id

    def exists(self) -> bool:
        return (self.path / "repo.json").is_file()

    @property
    def meta(self) -> dict:
        return json.loads((self.path / "repo.json").read_text())

    def save_meta(self, meta: dict) -> None:
        _write_atomic(self.path / "repo.json", json.dumps(meta, indent=1).encode())

    def commit(self, sha: str) -> dict:
        return json.loads((self.path / "commits" / f"{sha}.json").read_text())

    def has_commit(self, sha: str) -> bool:
        return (self.path / "commits" / f"{sha}.json").is_file()

    def resolve(self, revision: str) -> str:
        """Branch name, `refs/heads/<branch>` or full commit sha -> commit sha."""
        revision = unquote(revision)
        refs = self.meta["refs"]
        branch = revision.removeprefix("refs/heads/")
        if branch in refs:
            return refs[branch]
        if re.fullmatch(r"[0-9a-f]{40}", revision) and self.has_commit(revision):
            return revision
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def history(self, sha: str):
        while sha is not None:
            commit = self.commit(sha)
            yield sha, commit
            sha = commit["parent"]

    def write_object(self, content: bytes) -> str:
        oid = git_blob_oid(content)
        target = self.path / "objects" / oid
        if not target.exists():
            _write_atomic(target, content)
        return oid

    def read_file(self, entry: dict) -> bytes:
        if entry["lfs"] is not None:
            return (self.path / "lfs" / entry["lfs"]["oid"]).read_bytes()
        return (self.path / "objects" / entry["oid"]).read_bytes()

    def has_lfs_object(self, sha256: str) -> bool:
        return (self.path / "lfs" / sha256).is_file()

    def new_commit(self, parent: str | None, files: dict, title: str, message: str) -> str:
        record = {"parent": parent, "title": title, "message": message, "date": _now(), "files": files}
        # The nonce makes two commits with the same content and message distinct, as in git.
        sha = hashlib.sha1(json.dumps({**record, "nonce": secrets.token_hex(8)}).encode()).hexdigest()
        _write_atomic(self.path / "commits" / f"{sha}.json", json.dumps(record, indent=1).encode())
        return sha


class HubServer:
    """The server: storage folder, token, port, and failure switches for tests.

    `tree_page_size` is the number of entries per page of a tree listing (the Hub uses 1000) and
    `lfs_threshold` the size from which any file goes through LFS (the Hub uses 10 MB); tests make
    both small to exercise pagination and LFS with tiny files.
    """

    def __init__(self, root, port: int, token: str, user: str = "test-user"):
        self.root = Path(root)
        self.port = port
        self.token = token
        self.user = user
        self.endpoint = f"http://127.0.0.1:{port}"
        self.tree_page_size = 1000
        self.lfs_threshold = 10 * 1024 * 1024
        self.requests = []  # (method, route, path) of every request, for tests to inspect
        self._failures = []
        self._lock = threading.RLock()
        self._signing_key = secrets.token_bytes(16)
        self._httpd = None
        self._thread = None
        self._up = False
        self._lifecycle_lock = threading.Lock()
        self._connections = set()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "HubServer":
        with self._lifecycle_lock:  # waits for a stop in progress to release the port
            if self._httpd is not None:
                return self
            self.root.mkdir(parents=True, exist_ok=True)
            httpd = _HTTPServer(("127.0.0.1", self.port), _Handler)
            httpd.hub = self
            self._httpd = httpd
            self._thread = threading.Thread(target=httpd.serve_forever, name="hub-server", daemon=True)
            self._thread.start()
            self._up = True
        return self

    def stop(self) -> None:
        """Take the server down: new connections are refused, open ones are cut."""
        self._up = False
        with self._lifecycle_lock:
            if self._httpd is None:
                return
            self._httpd.shutdown()
            self._httpd.server_close()
            for connection in list(self._connections):
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._thread.join(timeout=5)
            self._httpd = None

    @property
    def running(self) -> bool:
        return self._up

    def fail_next(self, route: str, mode: str = "reset") -> None:
        """Make the next request to `route` fail.

        mode "reset": the connection is cut without an answer; "500": an internal server error;
        "stop": the connection is cut and the server goes away (connection refused from then on,
        until `start()`), as if it vanished in the middle of an upload.
        """
        if route not in ROUTES:
            raise ValueError(f"route={route!r}: expected one of {ROUTES}")
        if mode not in FAILURE_MODES:
            raise ValueError(f"mode={mode!r}: expected one of {FAILURE_MODES}")
        with self._lock:
            self._failures.append((route, mode))

    def fail_next_upload(self, mode: str = "stop") -> None:
        """The next commit (the request that makes an upload land) fails; by default the server dies."""
        self.fail_next("commit", mode)

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def _take_failure(self, route: str):
        with self._lock:
            for i, (failing_route, mode) in enumerate(self._failures):
                if failing_route == route:
                    del self._failures[i]
                    return mode
        return None

    # -- helpers used by the handler ---------------------------------------------------------

    def repo(self, repo_type: str, repo_id: str) -> Repo:
        return Repo(self.root, repo_type, repo_id)

    def existing_repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.repo(repo_type, repo_id)
        if not repo.exists():
            raise HubError(404, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")
        return repo

    def repo_url(self, repo_type: str, repo_id: str) -> str:
        return f"{self.endpoint}/{URL_PREFIXES[repo_type]}{repo_id}"

    def sign(self, text: str) -> str:
        return hmac.new(self._signing_key, text.encode(), hashlib.sha256).hexdigest()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


def _tree_entries(files: dict) -> dict:
    """path -> tree entry (files and every folder), the JSON shape of the Hub's tree API."""
    entries = {}
    for path, info in files.items():
        entry = {"type": "file", "oid": info["oid"], "size": info["size"], "path": path}
        if info["lfs"] is not None:
            entry["lfs"] = dict(info["lfs"])
        entries[path] = entry
    folders = {}
    for path in files:
        parts = path.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            folders.setdefault("/".join(parts[:depth]), []).append(path)
    for folder, paths in folders.items():
        oid = hashlib.sha1("".join(f"{p}:{files[p]['oid']}" for p in sorted(paths)).encode()).hexdigest()
        entries[folder] = {"type": "directory", "oid": oid, "size": 0, "path": folder}
    return entries


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ConceptDiffusionTestHub/1.0"
    timeout = 60

    # Routes: (method, regex on the raw path, route name, handler method). Revisions and paths
    # come URL-quoted; each handler unquotes what it takes.
    _T = r"(?P<type>model|dataset|space)s"
    _ID = r"(?P<repo_id>[^/]+/[^/]+)"
    _PREFIX = r"(?:(?P<prefix>datasets|spaces)/)?"
    ROUTE_TABLE = [
        ("GET", r"/api/whoami-v2", "whoami", "whoami"),
        ("POST", r"/api/repos/create", "create", "create_repo"),
        ("DELETE", r"/api/repos/delete", "delete", "delete_repo"),
        ("POST", r"/api/validate-yaml", "validate-yaml", "validate_yaml"),
        ("GET", rf"/api/{_T}/{_ID}(?:/revision/(?P<rev>[^/]+))?", "info", "repo_info"),
        ("GET", rf"/api/{_T}/{_ID}/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?", "tree", "tree"),
        ("POST", rf"/api/{_T}/{_ID}/paths-info/(?P<rev>[^/]+)", "paths-info", "paths_info"),
        ("POST", rf"/api/{_T}/{_ID}/preupload/(?P<rev>[^/]+)", "preupload", "preupload"),
        ("POST", rf"/api/{_T}/{_ID}/commit/(?P<rev>[^/]+)", "commit", "commit"),
        ("GET", rf"/api/{_T}/{_ID}/commits/(?P<rev>[^/]+)", "commits", "list_commits"),
        ("GET", rf"/api/{_T}/{_ID}/refs", "refs", "refs"),
        ("POST", rf"/api/{_T}/{_ID}/branch/(?P<branch>[^/]+)", "branch", "create_branch"),
        ("DELETE", rf"/api/{_T}/{_ID}/branch/(?P<branch>[^/]+)", "branch", "delete_branch"),
        ("POST", rf"/{_PREFIX}{_ID}\.git/info/lfs/objects/batch", "lfs-batch", "lfs_batch"),
        ("PUT", rf"/__lfs/{_T}/{_ID}/(?P<oid>[0-9a-f]{{64}})", "lfs-upload", "lfs_upload"),
        ("HEAD", rf"/{_PREFIX}{_ID}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve", "resolve"),
        ("GET", rf"/{_PREFIX}{_ID}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve", "resolve"),
    ]

    @property
    def hub(self) -> HubServer:
        return self.server.hub

    def log_message(self, format, *args):
        pass  # keep pytest output clean; `hub.requests` records what was asked

    def setup(self):
        super().setup()
        self.hub._connections.add(self.connection)

    def finish(self):
        self.hub._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    # -- plumbing ----------------------------------------------------------------------------

    def _dispatch(self, method: str):
        url = urlsplit(self.path)
        self.query = parse_qs(url.query, keep_blank_values=True)
        self._body = None
        for route_method, pattern, route, handler_name in self.ROUTE_TABLE:
            match = re.fullmatch(pattern, url.path) if route_method == method else None
            if match is not None:
                break
        else:
            route, handler_name, match = None, None, None
        self.hub.requests.append((method, route, url.path))

        if not self.hub.running:  # a kept-alive connection to a server that was stopped
            self._drop_connection()
            return
        failure = self._take_failure(route)
        if failure is not None:
            self.body()  # read the request, so that the client sees the cut and not a refused write
            if failure == "500":
                self._send_error(HubError(500, "Internal Error (simulated by the test server)"))
            else:
                self._drop_connection()
                if failure == "stop":
                    self.hub._up = False  # refuse at once; the port is released in the background
                    threading.Thread(target=self.hub.stop, daemon=True).start()
            return

        try:
            if match is None:
                raise HubError(404, f"Not found: {method} {url.path} is not an endpoint of the test Hub")
            # As on the Hub, validate-yaml is public (ModelCard.validate sends no token) and LFS
            # upload URLs are pre-signed; everything else needs the token.
            if route not in ("validate-yaml", "lfs-upload"):
                self._check_token()
            params = {k: v for k, v in match.groupdict().items() if v is not None}
            if "prefix" in params:
                params["type"] = {"datasets": "dataset", "spaces": "space"}[params.pop("prefix")]
            params.setdefault("type", "model")
            with self.hub._lock:
                getattr(self, handler_name)(**params)
        except HubError as error:
            self._send_error(error)

    def _take_failure(self, route):
        return self.hub._take_failure(route) if route is not None else None

    def _check_token(self):
        authorization = self.headers.get("Authorization", "")
        if authorization != f"Bearer {self.hub.token}":
            # The Hub's own message for a bad token; huggingface_hub keys its error type on it.
            raise HubError(401, "Invalid credentials in Authorization header", headers={
                "X-Error-Message": "Invalid credentials in Authorization header"})

    def _drop_connection(self):
        self.close_connection = True
        # Linger 0: closing sends a TCP reset, as a crashed server or a cut line would.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def body(self) -> bytes:
        if self._body is not None:
            return self._body
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self._body = b"".join(chunks)
        else:
            self._body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return self._body

    def json_body(self):
        try:
            return json.loads(self.body() or b"{}")
        except json.JSONDecodeError as error:
            raise HubError(400, f"Request body is not JSON: {error}")

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, str(value))
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, payload, status=200, headers=None):
        self._send(status, json.dumps(payload).encode(), headers)

    def _send_error(self, error: HubError):
        self.body()  # keep the connection usable: the request body must be consumed
        headers = dict(error.headers)
        if error.error_code is not None:
            headers["X-Error-Code"] = error.error_code
        headers.setdefault("X-Error-Message", error.message)
        self._send_json({"error": error.message, **error.payload}, status=error.status, headers=headers)

    def _bool_param(self, name: str) -> bool:
        return self.query.get(name, ["false"])[0].lower() in ("1", "true")

    # -- account and repos -------------------------------------------------------------------

    def whoami(self, type):
        self._send_json({
            "type": "user", "id": "0" * 24, "name": self.hub.user, "fullname": "Test User", "orgs": [],
            "auth": {"type": "access_token", "accessToken": {"displayName": "tests", "role": "write"}},
        })

    def create_repo(self, type):
        payload = self.json_body()
        repo_type = payload.get("type") or "model"
        if repo_type not in REPO_TYPES:
            raise HubError(400, f"Invalid repo type {repo_type!r}")
        name = payload.get("name") or ""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}", name):
            raise HubError(400, f"Invalid repo name {name!r}")
        repo_id = f"{payload.get('organization') or self.hub.user}/{name}"
        repo = self.hub.repo(repo_type, repo_id)
        url = self.hub.repo_url(repo_type, repo_id)
        if repo.exists():
            # The Hub answers a conflict with the existing repo's url, which create_repo(exist_ok=True) returns.
            raise HubError(409, f"You already created this {repo_type} repo: {repo_id}", payload={"url": url})
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        repo.path.mkdir(parents=True, exist_ok=True)
        attributes = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in DEFAULT_LFS_PATTERNS).encode()
        files = {".gitattributes": {"size": len(attributes), "oid": repo.write_object(attributes), "lfs": None}}
        sha = repo.new_commit(None, files, "initial commit", "")
        repo.save_meta({"private": private, "created_at": _now(), "refs": {"main": sha}})
        self._send_json({"url": url, "name": repo_id, "id": repo_id})

    def delete_repo(self, type):
        payload = self.json_body()
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or self.hub.user}/{payload.get('name')}"
        repo = self.hub.existing_repo(repo_type, repo_id)
        for path in sorted(repo.path.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        repo.path.rmdir()
        self._send_json({})

    def validate_yaml(self, type):
        errors, warnings = _check_card_metadata(self.json_body().get("content", ""))
        status = 400 if errors else 200
        self._send_json({"errors": errors, "warnings": warnings}, status=status)

    def repo_info(self, type, repo_id, rev="main"):
        repo = self.hub.existing_repo(type, repo_id)
        sha = repo.resolve(rev)
        commit = repo.commit(sha)
        meta = repo.meta
        with_blobs = self._bool_param("blobs")
        siblings = []
        for path, info in sorted(commit["files"].items()):
            sibling = {"rfilename": path}
            if with_blobs:
                sibling.update(size=info["size"], blobId=info["oid"])
                if info["lfs"] is not None:
                    lfs = info["lfs"]
                    sibling["lfs"] = {"size": lfs["size"], "sha256": lfs["oid"], "pointerSize": lfs["pointerSize"]}
            siblings.append(sibling)
        info = {
            "_id": hashlib.sha1(f"{type}/{repo_id}".encode()).hexdigest()[:24],
            "id": repo_id,
            "author": repo_id.split("/")[0],
            "sha": sha,
            "lastModified": commit["date"],
            "createdAt": meta["created_at"],
            "private": meta["private"],
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(f["size"] for f in commit["files"].values()),
        }
        if type == "model":
            info["modelId"] = repo_id
        self._send_json(info)

    def refs(self, type, repo_id):
        repo = self.hub.existing_repo(type, repo_id)
        branches = [{"name": name, "ref": f"refs/heads/{name}", "targetCommit": sha}
                    for name, sha in sorted(repo.meta["refs"].items())]
        self._send_json({"branches": branches, "converts": [], "tags": [], "pullRequests": []})

    def create_branch(self, type, repo_id, branch):
        repo = self.hub.existing_repo(type, repo_id)
        branch = unquote(branch)
        meta = repo.meta
        if branch in meta["refs"]:
            raise HubError(409, f"Reference already exists: refs/heads/{branch}")
        payload = self.json_body()
        start = payload.get("startingPoint")
        meta["refs"][branch] = repo.resolve(start) if start else meta["refs"]["main"]
        repo.save_meta(meta)
        self._send_json({})

    def delete_branch(self, type, repo_id, branch):
        repo = self.hub.existing_repo(type, repo_id)
        meta = repo.meta
        if meta["refs"].pop(unquote(branch), None) is None:
            raise HubError(404, f"Invalid rev id: {unquote(branch)}", "RevisionNotFound")
        repo.save_meta(meta)
        self._send_json({})

    def list_commits(self, type, repo_id, rev):
        repo = self.hub.existing_repo(type, repo_id)
        commits = [
            {"id": sha, "title": c["title"], "message": c["message"], "date": c["date"],
             "authors": [{"user": self.hub.user}]}
            for sha, c in repo.history(repo.resolve(rev))
        ]
        self._send_json(commits)

    # -- reading files -----------------------------------------------------------------------

    def _last_commit(self, repo: Repo, head: str, path: str) -> dict:
        """The newest commit that changed `path` (a file or a folder), as the tree API reports it."""

        def signature(files):
            return sorted((p, f["oid"]) for p, f in files.items() if p == path or p.startswith(path + "/"))

        history = list(repo.history(head))
        target = signature(history[0][1]["files"])
        last_sha, last = history[0]
        for sha, commit in history[1:]:
            if signature(commit["files"]) != target:
                break
            last_sha, last = sha, commit
        return {"id": last_sha, "title": last["title"], "date": last["date"]}

    def _expanded(self, repo, head, entry):
        entry = dict(entry)
        entry["lastCommit"] = self._last_commit(repo, head, entry["path"])
        if entry["type"] == "file":
            entry["securityFileStatus"] = {"status": "safe", "avScan": {"virusFound": False}, "pickleImportScan": None}
        return entry

    def tree(self, type, repo_id, rev, path=""):
        repo = self.hub.existing_repo(type, repo_id)
        head = repo.resolve(rev)
        path = unquote(path).strip("/")
        entries = _tree_entries(repo.commit(head)["files"])
        if path and entries.get(path, {}).get("type") != "directory":
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", headers={"X-Repo-Commit": head})
        if self._bool_param("recursive"):
            selected = [e for p, e in entries.items() if not path or p.startswith(path + "/")]
        else:
            selected = [e for p, e in entries.items() if _parent(p) == path]
        selected.sort(key=lambda e: (e["type"] != "directory", e["path"]))

        expand = self._bool_param("expand")
        page_size = min(self.hub.tree_page_size, 50) if expand else self.hub.tree_page_size
        start = int(self.query.get("cursor", ["0"])[0])
        page = selected[start:start + page_size]
        if expand:
            page = [self._expanded(repo, head, e) for e in page]
        headers = {}
        if start + page_size < len(selected):
            query = "&".join(f"{k}={quote(v[0])}" for k, v in self.query.items() if k != "cursor")
            next_url = f"{self.hub.endpoint}{urlsplit(self.path).path}?{query}&cursor={start + page_size}"
            headers["Link"] = f'<{next_url}>; rel="next"'
        self._send_json(page, headers=headers)

    def paths_info(self, type, repo_id, rev):
        repo = self.hub.existing_repo(type, repo_id)
        head = repo.resolve(rev)
        form = parse_qs(self.body().decode(), keep_blank_values=True)
        expand = form.get("expand", ["False"])[0].lower() in ("1", "true")
        entries = _tree_entries(repo.commit(head)["files"])
        found = [entries[p.strip("/")] for p in form.get("paths", []) if p.strip("/") in entries]
        if expand:
            found = [self._expanded(repo, head, e) for e in found]
        self._send_json(found)

    def resolve(self, type, repo_id, rev, path):
        repo = self.hub.existing_repo(type, repo_id)
        sha = repo.resolve(rev)
        path = unquote(path)
        files = repo.commit(sha)["files"]
        if path not in files:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", headers={"X-Repo-Commit": sha})
        entry = files[path]
        size = entry["size"]
        etag = entry["lfs"]["oid"] if entry["lfs"] is not None else entry["oid"]
        headers = {"X-Repo-Commit": sha, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if entry["lfs"] is not None:
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": size})
        status, start, end = 200, 0, size - 1
        byte_range = self.headers.get("Range")
        if byte_range and self.command == "GET":
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", byte_range.strip())
            if match is None or match.groups() == ("", ""):
                raise HubError(416, f"Invalid Range header {byte_range!r}", headers={"Content-Range": f"bytes */{size}"})
            first, last = match.groups()
            if first == "":
                start, end = max(size - int(last), 0), size - 1
            else:
                start, end = int(first), min(int(last), size - 1) if last else size - 1
            if start >= size or start > end:
                raise HubError(416, f"Range {byte_range!r} outside a file of {size} bytes",
                               headers={"Content-Range": f"bytes */{size}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        if self.command == "HEAD":
            headers["Content-Length"] = size
            self._send(200, b"", headers, content_type="application/octet-stream")
            return
        content = repo.read_file(entry)[start:end + 1]
        self._send(status, content, headers, content_type="application/octet-stream")

    # -- writing files -----------------------------------------------------------------------

    def _lfs_patterns(self, files: dict, repo: Repo) -> list:
        attributes = files.get(".gitattributes")
        if attributes is None:
            return list(DEFAULT_LFS_PATTERNS)
        lines = repo.read_file(attributes).decode(errors="replace").splitlines()
        return [line.split()[0] for line in lines if "filter=lfs" in line and line.split()]

    def preupload(self, type, repo_id, rev):
        repo = self.hub.existing_repo(type, repo_id)
        head = repo.resolve(rev)
        if self.query.get("create_pr"):
            raise HubError(400, "Pull requests are not supported by the test Hub")
        files = repo.commit(head)["files"]
        patterns = self._lfs_patterns(files, repo)
        answers = []
        for item in self.json_body().get("files", []):
            path, size = item["path"], int(item["size"])
            sample = base64.b64decode(item.get("sample", ""))
            as_lfs = (
                size >= self.hub.lfs_threshold
                or b"\0" in sample  # binary content never goes into git directly
                or any(fnmatch.fnmatch(path if "/" in p else path.rsplit("/", 1)[-1], p) for p in patterns)
            )
            existing = files.get(path)
            oid = None
            if existing is not None:
                oid = existing["lfs"]["oid"] if existing["lfs"] is not None else existing["oid"]
            answers.append({"path": path, "uploadMode": "lfs" if as_lfs else "regular", "shouldIgnore": False, "oid": oid})
        self._send_json({"files": answers, "commitOid": head})

    def lfs_batch(self, type, repo_id):
        repo = self.hub.existing_repo(type, repo_id)
        payload = self.json_body()
        if payload.get("operation") != "upload":
            raise HubError(422, f"LFS operation {payload.get('operation')!r} is not supported by the test Hub")
        objects = []
        for obj in payload.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            answer = {"oid": oid, "size": size, "authenticated": True}
            if not repo.has_lfs_object(oid):
                # The upload URL is pre-signed (huggingface_hub sends no token to it), like an S3 URL.
                href = f"{self.hub.endpoint}/__lfs/{type}s/{repo_id}/{oid}?size={size}&sig={self.hub.sign(f'{type}/{repo_id}/{oid}')}"
                answer["actions"] = {"upload": {"href": href, "expires_at": "2099-01-01T00:00:00Z"}}
            objects.append(answer)
        self._send_json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                        headers={"Content-Type": "application/vnd.git-lfs+json"})

    def lfs_upload(self, type, repo_id, oid):
        signature = self.query.get("sig", [""])[0]
        if not hmac.compare_digest(signature, self.hub.sign(f"{type}/{repo_id}/{oid}")):
            raise HubError(403, "Invalid or missing signature on the LFS upload URL")
        repo = self.hub.existing_repo(type, repo_id)
        content = self.body()
        if hashlib.sha256(content).hexdigest() != oid:
            raise HubError(400, f"Uploaded content does not match its sha256 {oid}")
        target = repo.path / "lfs" / oid
        if not target.exists():
            _write_atomic(target, content)
        self._send(200, b"", {"ETag": f'"{hashlib.md5(content).hexdigest()}"'})

    def commit(self, type, repo_id, rev):
        repo = self.hub.existing_repo(type, repo_id)
        branch = unquote(rev).removeprefix("refs/heads/")
        if self.query.get("create_pr"):
            raise HubError(400, "Pull requests are not supported by the test Hub")
        meta = repo.meta
        if branch not in meta["refs"]:
            raise HubError(404, f"Invalid rev id: {branch} (commits go to a branch)", "RevisionNotFound")
        head = meta["refs"][branch]
        try:
            lines = [json.loads(line) for line in self.body().splitlines() if line.strip()]
        except json.JSONDecodeError as error:
            raise HubError(400, f"Commit payload is not ndjson: {error}")
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "Commit payload must start with a 'header' line")
        header = lines[0]["value"]
        if header.get("parentCommit") not in (None, head):
            raise HubError(412, f"A commit has happened since {header['parentCommit']}: the head is now {head}")
        files = {path: dict(info) for path, info in repo.commit(head)["files"].items()}
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value", {})
            path = value.get("path", "").strip("/")
            if key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise HubError(400, f"Unsupported encoding {value.get('encoding')!r} for {path}")
                content = base64.b64decode(value["content"])
                files[path] = {"size": len(content), "oid": repo.write_object(content), "lfs": None}
            elif key == "lfsFile":
                sha256 = value["oid"]
                if not repo.has_lfs_object(sha256):
                    raise HubError(422, f"Your push was rejected: LFS object {sha256} for {path} was never uploaded")
                size = (repo.path / "lfs" / sha256).stat().st_size
                pointer = lfs_pointer(sha256, size)
                files[path] = {"size": size, "oid": git_blob_oid(pointer),
                               "lfs": {"oid": sha256, "size": size, "pointerSize": len(pointer)}}
            elif key == "deletedFile":
                if files.pop(path, None) is None:
                    raise HubError(404, f"Entry not found: cannot delete {path}", "EntryNotFound")
            elif key == "deletedFolder":
                inside = [p for p in files if p.startswith(path + "/")]
                if not inside:
                    raise HubError(404, f"Entry not found: cannot delete folder {path}", "EntryNotFound")
                for p in inside:
                    del files[p]
            else:
                raise HubError(400, f"Unknown commit operation {key!r}")
        sha = repo.new_commit(head, files, header.get("summary", ""), header.get("description", ""))
        meta["refs"][branch] = sha
        repo.save_meta(meta)
        self._send_json({
            "success": True, "commitOid": sha, "hookOutput": "", "pullRequestUrl": None,
            "commitUrl": f"{self.hub.repo_url(type, repo_id)}/commit/{sha}",
        })


def _check_card_metadata(content: str):
    """A structural check of a card's YAML front matter (the test Hub has no YAML parser).

    Returns (errors, warnings) as the Hub's validate-yaml endpoint does: the block must be closed,
    top-level lines must be `key: value` or `key:`, and YAML forbids tabs in indentation.
    """
    if not content.startswith("---"):
        return [], [{"message": "Empty or missing yaml metadata in repo card"}]
    lines = content.splitlines()
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        return [{"message": "The YAML metadata block is not closed by a '---' line"}], []
    errors = []
    for number, line in enumerate(lines[1:end], start=2):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith("\t") or re.match(r"^ *\t", line):
            errors.append({"message": f"line {number}: tabs are not allowed in YAML indentation"})
        elif not line.startswith((" ", "-")) and not re.match(r"^[^\s:#][^:]*:(\s.*)?$", line):
            errors.append({"message": f"line {number}: expected 'key: value', got {line!r}"})
    if end == 1:
        return errors, [{"message": "Empty or missing yaml metadata in repo card"}]
    return errors, []
