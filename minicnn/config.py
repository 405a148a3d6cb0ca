"""Global settings: the default floating-point type, as ``keras.backend.floatx``."""

from __future__ import annotations

import numpy as np

_FLOATX = "float32"
_ALLOWED = ("float32", "float64")


def floatx() -> str:
    """Name of the dtype every layer computes in (``"float32"`` by default)."""
    return _FLOATX


def set_floatx(name: str) -> None:
    """Switch the compute dtype to ``"float32"`` or ``"float64"`` (gradient checks use float64)."""
    global _FLOATX
    if name not in _ALLOWED:
        raise ValueError(f"floatx must be one of {_ALLOWED}, got {name!r}")
    _FLOATX = name


def dtype() -> np.dtype:
    """The compute dtype as a NumPy dtype."""
    return np.dtype(_FLOATX)
