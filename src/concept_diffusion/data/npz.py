"""Reading one array of an .npz file without holding it twice in memory."""

import zipfile
from pathlib import Path

import numpy as np


def open_npz_array(path, key: str, expected: str) -> np.ndarray:
    """Array `key` of the .npz at `path`, memory-mapped when the archive stores it uncompressed.

    `np.load(path)[key]` reads the whole member into RAM; an uncompressed member (np.savez) is
    instead mapped from the file, so a 12 GB MPI3D archive costs no RAM up front. A compressed
    member (np.savez_compressed) has to be inflated and is read once into memory.
    Pickled object arrays are refused (allow_pickle=False). `expected` describes the file for
    error messages.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; expected {expected}")
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as error:
        raise ValueError(f"{path}: not a readable .npz archive ({error}); expected {expected}; the file may be truncated") from None
    with archive:
        names = archive.namelist()
        member = f"{key}.npy"
        if member not in names:
            found = sorted(n[:-4] for n in names if n.endswith(".npy"))
            raise ValueError(f"{path}: no array {key!r} (found {found}); expected {expected}")
        info = archive.getinfo(member)
        try:
            if info.compress_type == zipfile.ZIP_STORED:
                return _memmap_stored_member(path, archive, info)
            with archive.open(member) as stream:
                return np.lib.format.read_array(stream, allow_pickle=False)
        except (ValueError, EOFError, OSError, zipfile.BadZipFile) as error:
            raise ValueError(f"{path}: array {key!r} could not be read ({error}); expected {expected}; the file may be truncated") from None


def _memmap_stored_member(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    with archive.open(info) as stream:
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(stream)
        header_size = stream.tell()
    if dtype.hasobject:
        raise ValueError("it holds Python objects, which are only readable with allow_pickle=True")
    # The member's bytes start after its local header, whose extra field may differ from the
    # central directory's, so its length is read from the local header itself.
    with open(path, "rb") as raw:
        raw.seek(info.header_offset)
        local = raw.read(30)
    name_length = int.from_bytes(local[26:28], "little")
    extra_length = int.from_bytes(local[28:30], "little")
    offset = info.header_offset + 30 + name_length + extra_length + header_size
    expected_bytes = int(np.prod(shape)) * dtype.itemsize
    if offset + expected_bytes > path.stat().st_size:
        raise ValueError(f"its data ends at byte {offset + expected_bytes} but the file has {path.stat().st_size}")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran_order else "C")
