"""Fashion-MNIST from IDX files (local copies first, download last) and the XOR table.

    >>> (x_train, y_train), (x_test, y_test) = load_fashion_mnist()   # uint8, like Keras
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import math
import os
import sys
import tempfile
import time
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot"]

# name -> (SHA-256 of the decompressed IDX bytes, their length)
FILES = {
    "train-images-idx3-ubyte": (
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 47040016),
    "train-labels-idx1-ubyte": (
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60008),
    "t10k-images-idx3-ubyte": (
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 7840016),
    "t10k-labels-idx1-ubyte": (
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10008),
}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
# The examples' --data help: where load_fashion_mnist looks when no folder is given.
DATA_HELP = ("folder with the four Fashion-MNIST IDX files (default: look in $MINICNN_DATA, "
             "the user cache, /usr/share/datasets/fashion-mnist, then download)")
MIRRORS = (
    "https://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CODES = {np.dtype(v).newbyteorder(">") if np.dtype(v).itemsize > 1 else np.dtype(v): k
          for k, v in _DTYPES.items()}


class DatasetError(ValueError):
    """A data file is missing, damaged or not what it claims to be."""


# ----------------------------------------------------------------------------- IDX format


IDX_MAX_BYTES = 1 << 30  # read_idx refuses headers that promise more (Fashion-MNIST: 47 MB)


@contextlib.contextmanager
def _open_payload(path: Path) -> Iterator[BinaryIO]:
    """The file as a stream of its decompressed bytes (gzip detected by its magic number).

    Every error a damaged file can cause becomes a DatasetError naming the file.
    """
    try:
        with open(path, "rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            yield gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw
    except DatasetError:
        raise
    except (OSError, EOFError, zlib.error, ValueError) as exc:  # BadGzipFile is an OSError
        raise DatasetError(f"{path}: cannot read or decompress the file ({exc})") from None


def _read_bytes(path: Path, limit: int) -> bytes:
    """At most ``limit`` decompressed bytes of a file: a longer one is an error, found while
    streaming (a small .gz that inflates to gigabytes is never inflated in full)."""
    with _open_payload(path) as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise DatasetError(f"{path}: decompresses to more than the {limit} bytes expected; "
                           "it is not the file it claims to be")
    return data


def _idx_header(head: bytes, name: str) -> tuple[np.dtype, tuple[int, ...], int]:
    """dtype, shape and header length from an IDX file's first bytes (4 + 4 * ndim)."""
    if len(head) < 4 or head[0] != 0 or head[1] != 0:
        raise DatasetError(f"{name}: not an IDX file (bad magic number)")
    code, ndim = head[2], head[3]
    if code not in _DTYPES or ndim == 0:
        raise DatasetError(f"{name}: bad IDX header (type code 0x{code:02x}, {ndim} dimensions)")
    header = 4 + 4 * ndim
    if len(head) < header:
        raise DatasetError(f"{name}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(head, ">u4", ndim, 4))
    return np.dtype(_DTYPES[code]), shape, header


def _payload_bytes(dtype: np.dtype, shape: tuple[int, ...]) -> int:
    return math.prod(shape) * dtype.itemsize  # Python ints: no overflow


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """IDX bytes -> array. Header: 0, 0, dtype code, ndim, then ndim big-endian uint32 sizes."""
    dtype, shape, header = _idx_header(data, name)
    expected = header + _payload_bytes(dtype, shape)
    if len(data) != expected:
        raise DatasetError(
            f"{name}: the header promises shape {shape} ({expected} bytes) but the file has "
            f"{len(data)} bytes; it is truncated or damaged"
        )
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike, max_bytes: int = IDX_MAX_BYTES) -> np.ndarray:
    """Read an IDX file, gzipped or raw, streaming: its header is checked (and its promised
    size against ``max_bytes``) before the payload is read."""
    path = Path(path)
    with _open_payload(path) as stream:
        head = stream.read(4)
        if len(head) == 4:
            head += stream.read(4 * head[3])
        dtype, shape, _ = _idx_header(head, str(path))
        size = _payload_bytes(dtype, shape)
        if size > max_bytes:
            raise DatasetError(f"{path}: the header promises shape {shape} ({size} bytes), more "
                               f"than the {max_bytes} bytes allowed; damaged or not an image file")
        payload = stream.read(size + 1)
    return parse_idx(head + payload, str(path))


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` as IDX (gzipped when ``compress`` or the name ends in .gz)."""
    path = Path(path)
    array = np.asarray(array)
    big = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    if big not in _CODES:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    header = bytes([0, 0, _CODES[big], array.ndim]) + np.array(array.shape, ">u4").tobytes()
    payload = header + array.astype(big).tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        payload = gzip.compress(payload)
    path.write_bytes(payload)


# ----------------------------------------------------------------------------- lookup


def _candidates(path) -> list[Path]:
    """Folders to look in, in order: path=, $MINICNN_DATA, the user cache, Debian's package."""
    if path is not None:
        return [Path(path)]
    folders = []
    if os.environ.get("MINICNN_DATA"):
        folder = Path(os.environ["MINICNN_DATA"])
        if not folder.is_dir():
            raise DatasetError(f"MINICNN_DATA={str(folder)!r} is not a folder; point it at the "
                               "folder that holds the four Fashion-MNIST files, or unset it")
        folders.append(folder)
    return folders + [cache_dir(), DEBIAN_DIR]


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/minicnn/fashion-mnist`` (``~/.cache/minicnn/fashion-mnist``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "minicnn" / "fashion-mnist"


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / (name + ".gz"), folder / name):
        if candidate.is_file():
            return candidate
    return None


def _verified(path: Path, name: str) -> bytes:
    """The decompressed bytes of a data file whose SHA-256 matches the official one."""
    digest, size = FILES[name]
    data = _read_bytes(path, size)
    if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
        raise DatasetError(
            f"{path}: checksum mismatch ({len(data)} bytes, expected {size}); the file is "
            "damaged or not the official Fashion-MNIST. Delete it and load again"
        )
    return data


DOWNLOAD_DEADLINE = 900.0  # seconds for one file, however slowly the server sends it


def _download(name: str, folder: Path, deadline: float | None = None) -> Path:
    """Fetch ``name``.gz into ``folder`` through a temporary file renamed when complete.

    Each mirror gets ``deadline`` seconds in all (a server that trickles bytes cannot make
    the download last for ever), besides the 30 s limit on every read.
    """
    deadline = DOWNLOAD_DEADLINE if deadline is None else deadline
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (name + ".gz")
    errors = []
    for mirror in MIRRORS:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}-", suffix=".part")
        give_up = time.monotonic() + deadline
        try:
            with urllib.request.urlopen(mirror + name + ".gz", timeout=30) as response, \
                    os.fdopen(fd, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0)
                done = 0
                while chunk := response.read1(1 << 16):  # what has arrived, at once
                    if time.monotonic() > give_up:
                        raise DatasetError(f"gave up after {deadline:.0f} s (too slow)")
                    out.write(chunk)
                    done += len(chunk)
                    _progress(name, done, total)
            sys.stderr.write("\n")
            _verified(Path(tmp), name)
            os.replace(tmp, target)
            return target
        except (OSError, DatasetError) as exc:
            errors.append(f"{mirror}: {exc}")
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise DatasetError("download failed: " + "; ".join(errors))


def _progress(name: str, done: int, total: int) -> None:
    if total:
        filled = int(30 * done / total)
        sys.stderr.write(f"\r{name}.gz [{'=' * filled:<30}] {done / total:6.1%}")
    else:
        sys.stderr.write(f"\r{name}.gz {done / 1e6:.1f} MB")


def load_fashion_mnist(path: str | os.PathLike | None = None, download: bool = True):
    """``(x_train, y_train), (x_test, y_test)``: uint8 images (N, 28, 28) and labels (N,).

    Looks in ``path`` (if given), ``$MINICNN_DATA``, ``~/.cache/minicnn/fashion-mnist`` and
    ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``); without a
    complete local copy (and no ``path``) downloads the official files into the cache.
    Every file's decompressed SHA-256 is checked.
    """
    folders = _candidates(path)
    arrays = {}
    for name in FILES:
        found = next((p for p in (_find(f, name) for f in folders) if p is not None), None)
        if found is None:
            if path is not None or not download:
                raise DatasetError(_missing_message(name, folders))
            try:
                found = _download(name, cache_dir())
            except DatasetError as exc:
                raise DatasetError(f"{_missing_message(name, folders)}\n{exc}") from None
        arrays[name] = parse_idx(_verified(found, name), str(found))
    return ((arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]),
            (arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"]))


def _missing_message(name: str, folders: list[Path]) -> str:
    looked = ", ".join(str(f) for f in folders)
    return (
        f"Fashion-MNIST file {name}(.gz) not found; looked in: {looked}. Get the data with "
        "'apt-get install dataset-fashion-mnist' (Debian/Ubuntu), or put the four official "
        f"files in a folder and set MINICNN_DATA to it, or allow a download into {cache_dir()}"
    )


def to_float_images(x: np.ndarray) -> np.ndarray:
    """uint8 images (N, 28, 28) -> float32 (N, 28, 28, 1) scaled to [0, 1], as the examples
    use. Float images already in [0, 1] are taken as scaled, not divided again (that would
    make them all nearly black); only the channel axis is added."""
    x = np.asarray(x)
    if x.dtype.kind not in "uif":
        raise ValueError(f"to_float_images takes pixels 0..255 (e.g. uint8) or floats in "
                         f"[0, 1], got dtype {x.dtype}")
    if x.size == 0:
        return x.astype(np.float32)[..., None]
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise ValueError("to_float_images: the images contain NaN or inf")
    low, high = float(x.min()), float(x.max())
    if x.dtype.kind == "f" and 0.0 <= low and high <= 1.0:  # already scaled: keep them
        return x.astype(np.float32)[..., None]
    if low < 0 or high > 255:
        raise ValueError(f"to_float_images takes pixels 0..255 or floats in [0, 1]; these "
                         f"run from {low:g} to {high:g} (standardised or 16-bit images: "
                         "scale them yourself)")
    return (x.astype(np.float32) / 255.0)[..., None]


def load_xor() -> tuple[np.ndarray, np.ndarray]:
    """The XOR truth table: x (4, 2) of 0/1 floats and y (4,) = x0 xor x1."""
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    return x, np.array([0, 1, 1, 0], dtype=np.int64)
