"""Write files and folders whole or not at all: write under a temporary name beside the target, then rename.

A crash or an exception mid-write leaves what was there before (or nothing), never half a file.
Every writer in the package goes through these three functions. Only the two modules that are
copied into Hub repos as remote code (the encoder and the pipeline) keep their own few lines,
because they must import nothing from the package.
"""

import contextlib
import json
import os
import shutil
import uuid
from typing import Iterator, Union

PathLike = Union[str, os.PathLike]


def _temporary_name(path: str, suffix: str) -> str:
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{suffix}")


@contextlib.contextmanager
def atomic_path(path: PathLike, suffix: str = "") -> Iterator[str]:
    """Yield a temporary file path beside `path`; rename it onto `path` when the block succeeds.

    `suffix` keeps an extension for writers that read it (`atomic_path("grid.png", ".png")` for PIL).

    Example:
        >>> with atomic_path("scores.json") as temporary:
        ...     Path(temporary).write_text("{}")
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = _temporary_name(path, suffix)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)


@contextlib.contextmanager
def atomic_directory(path: PathLike) -> Iterator[str]:
    """Yield an empty staging folder beside `path`; it replaces `path` (and all it held) when the block succeeds."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    staging = _temporary_name(path, "")
    os.makedirs(staging)
    try:
        yield staging
        if os.path.isdir(path):
            backup = _temporary_name(path, ".old")
            os.replace(path, backup)
            os.replace(staging, path)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_text(path: PathLike, text: str) -> None:
    """Write `text` to `path` atomically (UTF-8)."""
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8") as file:
            file.write(text)


def write_json(path: PathLike, data) -> None:
    """Write `data` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(data, indent=2) + "\n")
