"""Model files on disk: atomic writes, and reads of ``.npz`` archives that trust nothing.

A saved model is a NumPy ``.npz`` (a zip of ``.npy`` members, never pickled objects).
Writing goes to a temporary file beside the target that replaces it only when complete,
so a crash or a full disk leaves the old file. Reading checks each member's header
(shape, dtype, size) against what the caller expects *before* reading its data, so a
small hostile file cannot make us allocate gigabytes.
"""

from __future__ import annotations

import contextlib
import glob
import os
import stat
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from typing import BinaryIO

import numpy as np

# What a damaged or crafted file can make the readers raise; load_model turns each into
# one ValueError that names the file.
BAD_FILE_ERRORS = (ValueError, KeyError, TypeError, IndexError, AttributeError, OverflowError,
                   EOFError, OSError, UnicodeDecodeError, zipfile.BadZipFile, zlib.error,
                   NotImplementedError)
_TMP_SUFFIX = ".minicnn-tmp"
_STALE_AFTER = 3600.0  # seconds without a write after which a temporary is a dead save's


# ----------------------------------------------------------------------------- writing


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(file)`` on a temporary file, then rename it over ``path``.

    Readers see the old file or the new one, never half of one. A symlink is written
    through (its target is replaced, the link stays); an existing file keeps its
    permission bits, a new one gets the usual ones (0666 less the umask).
    """
    target = os.path.realpath(path)
    folder, name = os.path.split(target)
    if os.path.exists(target) and not os.access(target, os.W_OK):
        raise PermissionError(f"{os.fspath(path)!r} is read-only for this user; it was left as "
                              "it was (make it writable, or save under another name)")
    _remove_stale_temporaries(folder, name)
    mode = _mode_for(target)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.{os.getpid()}.", suffix=_TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _mode_for(target: str) -> int:
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _remove_stale_temporaries(folder: str, name: str) -> None:
    """Delete temporaries of ``name`` that no save has written to for ``_STALE_AFTER``
    seconds (left by a save whose process died: kill -9, power loss). Age, not the pid in
    the name: a writer in another PID namespace has a pid this process cannot see."""
    now = time.time()
    for tmp in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(name)}.*{_TMP_SUFFIX}")):
        with contextlib.suppress(OSError):
            if now - os.stat(tmp).st_mtime > _STALE_AFTER:
                os.unlink(tmp)


# ----------------------------------------------------------------------------- reading


class NpzArchive:
    """Checked, lazy access to the members of an ``.npz`` file.

        with NpzArchive(path) as archive:
            archive.check({"weights/0/kernel": (784, 10), ...})   # headers only
            kernel = archive.array("weights/0/kernel")
    """

    def __init__(self, path: str):
        self._zip = zipfile.ZipFile(path)  # FileNotFoundError passes through unchanged
        self._members = {}
        for info in self._zip.infolist():
            if not info.filename.endswith(".npy"):
                raise ValueError(f"unexpected member {info.filename!r}")
            self._members[info.filename[:-4]] = info

    def __enter__(self) -> NpzArchive:
        return self

    def __exit__(self, *exc) -> None:
        self._zip.close()

    def names(self) -> set[str]:
        return set(self._members)

    def header(self, name: str) -> tuple[tuple[int, ...], np.dtype]:
        """Shape and dtype of a member, from its header alone; checks its size agrees."""
        info = self._members[name]
        with self._zip.open(info) as f:
            version = np.lib.format.read_magic(f)
            read = {(1, 0): np.lib.format.read_array_header_1_0,
                    (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read is None:
                raise ValueError(f"{name}: unsupported .npy version {version}")
            shape, fortran, dtype = read(f, max_header_size=10_000)
            offset = f.tell()
        if dtype.hasobject:
            raise ValueError(f"{name}: holds Python objects, which minicnn never loads")
        if info.file_size != offset + int(np.prod(shape, dtype=object)) * dtype.itemsize:
            raise ValueError(f"{name}: its size does not match its header {shape} {dtype}")
        return tuple(shape), dtype

    def check(self, expected: dict[str, tuple[int, ...]], dtypes=("float32", "float64")) -> None:
        """Each named member exists with that shape and a float dtype."""
        for name, shape in expected.items():
            if name not in self._members:
                raise KeyError(f"missing array {name!r}")
            got_shape, dtype = self.header(name)
            if got_shape != tuple(shape):
                raise ValueError(f"{name} has shape {got_shape}, the model needs {tuple(shape)}")
            if dtype.name not in dtypes:
                raise ValueError(f"{name} has dtype {dtype}, expected one of {dtypes}")

    def array(self, name: str) -> np.ndarray:
        with self._zip.open(self._members[name]) as f:
            return np.lib.format.read_array(f, allow_pickle=False)

    def small_bytes(self, name: str, limit: int) -> bytes:
        """A 1-D uint8 member (the JSON config) of at most ``limit`` bytes."""
        shape, dtype = self.header(name)
        if dtype != np.uint8 or len(shape) != 1 or shape[0] > limit:
            raise ValueError(f"{name}: expected at most {limit} bytes of uint8, got {shape} "
                             f"{dtype}")
        return self.array(name).tobytes()
