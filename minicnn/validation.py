"""Input checks shared by the public entry points: fail early, name the problem and the fix."""

from __future__ import annotations

import warnings

import numpy as np


def as_array(x, what: str) -> np.ndarray:
    """A numeric NumPy array (no copy when it already is one), or a TypeError."""
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{what} must be a numeric array, got {type(x).__name__}")
    try:
        arr = np.asarray(x)
    except ValueError:  # NumPy refuses nested lists of different lengths
        raise ValueError(f"{what} is ragged (its rows have different lengths); it must be a "
                         "rectangular array, e.g. every image the same shape") from None
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{what} must hold numbers, got an array of dtype {arr.dtype}")
    if arr.dtype.kind == "c":  # casting would keep the real part and drop the rest
        raise TypeError(f"{what} must hold real numbers, got complex ({arr.dtype}); pass "
                        f"np.real({what}) or np.abs({what}) if that is what you mean")
    return arr


def check_finite(arr: np.ndarray, what: str) -> None:
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        bad = int(np.size(arr) - np.isfinite(arr).sum())
        raise ValueError(f"{what} contains {bad} NaN or inf value(s) (as {arr.dtype}); clean, "
                         "impute or rescale them first")


def as_finite(arr: np.ndarray, dtype, what: str) -> np.ndarray:
    """A copy of ``arr`` in ``dtype``, checked finite after the cast (1e300 is inf in float32)."""
    with np.errstate(over="ignore"):
        out = arr.astype(dtype)
    check_finite(out, what)
    return out


def check_inputs(x, expected: tuple[int, ...], dtype, what: str = "x") -> np.ndarray:
    """x must be (N, *expected) with N >= 1, finite in ``dtype``; returns a copy in ``dtype``.

    Warns (once) when images look like raw 0..255 pixels."""
    arr = as_array(x, what)
    want = "(N, " + ", ".join(str(d) for d in expected) + ")"
    if arr.ndim == len(expected) and arr.shape[1:] == tuple(expected[:-1]) and expected[-1] == 1:
        raise ValueError(
            f"{what} has shape {arr.shape} but the model expects {want}: the channel axis is "
            f"missing; use {what}[..., None]"
        )
    if arr.ndim != len(expected) + 1 or arr.shape[1:] != tuple(expected):
        raise ValueError(f"{what} has shape {arr.shape}, expected {want}")
    if arr.shape[0] == 0:
        raise ValueError(f"{what} is empty; expected at least one sample")
    warn_if_unscaled(arr, what)
    return as_finite(arr, dtype, what)


def check_labels(y, n: int, n_outputs: int, sparse: bool, categorical: bool) -> np.ndarray:
    """Validate targets for n samples and return them as floats: (n, n_outputs), or the
    class indices (n,) when ``sparse`` (a batch's one-hot rows are made when it is used)."""
    arr = as_array(y, "y")
    if arr.shape[:1] != (n,):
        raise ValueError(f"x and y have different lengths: {n} samples but y has shape {arr.shape}")
    check_finite(arr, "y")
    if sparse:
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim == 2 and arr.shape[1] == n_outputs:
            raise ValueError(
                f"y has shape {arr.shape}: one-hot labels, but the loss "
                "'sparse_categorical_crossentropy' takes class indices of shape (N,). Compile "
                "with loss='categorical_crossentropy', or pass y.argmax(axis=1)"
            )
        if arr.ndim != 1:
            raise ValueError(f"sparse labels must be class indices of shape (N,), got {arr.shape}")
        if not np.all(arr == np.round(arr)):
            raise ValueError("sparse labels must be whole numbers (class indices)")
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi >= n_outputs:
            raise ValueError(
                f"labels must lie in [0, {n_outputs}) for a model with {n_outputs} outputs; "
                f"found values from {lo:g} to {hi:g}"
            )
        return arr.astype(np.float64)  # indices: each batch becomes one-hot (``one_hot``)
    if n_outputs == 1 and arr.ndim == 1:
        arr = arr[:, None]
    if arr.shape != (n, n_outputs):
        raise ValueError(f"y must have shape ({n}, {n_outputs}) for this model, got {arr.shape}")
    if categorical and (arr.min() < 0 or arr.max() > 1):
        raise ValueError("targets of a cross-entropy loss must lie in [0, 1] (one-hot or 0/1)")
    return arr


def check_seed(seed) -> int | None:
    """None, or a non-negative int (NumPy's seeds)."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be None or an int >= 0, got {seed!r}")
    return int(seed)


def check_positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return int(value)


_warned_unscaled = False


def warn_if_unscaled(x: np.ndarray, what: str = "x") -> None:
    """Warn once per process when images look like raw 0..255 pixels (uint8, or max > 1.5).

    Raw pixels saturate the first layer (losses in the tens); scale them to [0, 1] first.
    """
    global _warned_unscaled
    if _warned_unscaled or x.ndim != 4 or x.size == 0:
        return
    top = x.max()
    raw = x.dtype == np.uint8 or (np.issubdtype(x.dtype, np.floating) and x.min() >= 0
                                  and 1.5 < top < np.inf)
    if raw:
        _warned_unscaled = True
        warnings.warn(
            f"{what} looks like raw pixels ({x.dtype}, values up to {top:g}); networks train "
            "badly on 0..255 inputs. Scale them to [0, 1] first, e.g. with "
            "minicnn.datasets.to_float_images(x) or x / 255.0",
            UserWarning, stacklevel=5,
        )
