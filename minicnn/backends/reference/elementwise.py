"""Small element-wise kernels: Dropout's mask, AdamW's decay and the weight penalties."""

from __future__ import annotations

import functools

import numpy as np


def multiply(a, b):
    """a * b element-wise, same shapes (Dropout applies its scaled mask with it)."""
    return a * b


def quietly(update):
    """``update`` without NumPy's overflow and invalid-value warnings: the NaN and inf they
    warn of are what ``keep_finite`` then keeps out."""

    @functools.wraps(update)
    def run(*args, **kwargs):
        with np.errstate(over="ignore", invalid="ignore"):
            return update(*args, **kwargs)

    return run


def keep_finite(*updates) -> int:
    """Write each (array, its new values) pair in place, except at the elements where any
    new value is NaN or inf: those keep all their old values. -> how many were kept.
    An optimizer's update goes through here, so it never leaves NaN or inf behind."""
    finite = np.logical_and.reduce([np.isfinite(new) for _, new in updates])
    for array, new in updates:
        np.copyto(array, new, where=finite)
    return int(finite.size - np.count_nonzero(finite))


@quietly
def add_scaled(y, x, alpha: float) -> int:
    """y <- y + alpha x, in place (AdamW's decoupled weight decay: p <- p - lr wd p), but
    ``keep_finite``: -> the elements of y kept as they were."""
    return keep_finite((y, y + alpha * x))


def weight_penalty(w, l1: float, l2: float, g=None) -> float:
    """l1 sum|w| + l2 sum w^2; with a gradient g, also g += l1 sign(w) + 2 l2 w in place."""
    if g is not None:
        g += l1 * np.sign(w) + 2 * l2 * w
    return float(l1 * np.abs(w).sum() + l2 * (w * w).sum())
