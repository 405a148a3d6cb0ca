"""Where arrays live. The CPU backends keep them in host memory, so these are trivial here;
the CUDA backend overrides them to move arrays to and from the GPU."""

from __future__ import annotations

import numpy as np


def to_device(a: np.ndarray) -> np.ndarray:
    """Host array -> the backend's memory: for a CPU backend, the same array."""
    return a


def to_host(a) -> np.ndarray:
    """Backend array -> host NumPy array."""
    return np.asarray(a)


def zeros_like(a: np.ndarray) -> np.ndarray:
    """Zeros of a's shape and dtype, in the backend's memory."""
    return np.zeros_like(a)


def reshape(a: np.ndarray, shape) -> np.ndarray:
    """A view of a with this shape (one entry may be -1), no copy."""
    return a.reshape(shape)


def take_rows(a: np.ndarray, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out[i] = a[rows[i]]: the rows of a in the order ``rows`` gives (an epoch's shuffle)."""
    return np.take(a, rows, axis=0, out=out)
