"""Small element-wise kernels: Dropout, AdamW's decay and the weight penalties."""

from __future__ import annotations

import functools

import numpy as np


def multiply(a, b):
    """a * b element-wise, same shapes (per-sample loss weights)."""
    return a * b


# Dropout's random numbers come from a counter-based generator: element i's draw is a hash
# of (key, i), splitmix64's finalizer of key + i * golden ratio (integers wrap mod 2^64).
# Any element's draw is computed on its own, so every backend and thread makes the same
# mask in any order, and the backward remakes it from the key instead of storing it.
GOLDEN, MIX_1, MIX_2 = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9),
                        np.uint64(0x94D049BB133111EB))
SHIFTS = tuple(np.uint64(n) for n in (30, 27, 31, 32))


def dropout_threshold(rate: float) -> np.uint64:
    """An element is kept when its 32-bit draw is >= this: with probability 1 - rate."""
    return np.uint64(round(rate * 2**32))


def dropout_draws(size: int, key: int) -> np.ndarray:
    """The 32-bit draws (as uint64) of elements 0 .. size-1 for this key."""
    z = np.arange(size, dtype=np.uint64) * GOLDEN + np.uint64(key)
    z = (z ^ (z >> SHIFTS[0])) * MIX_1
    z = (z ^ (z >> SHIFTS[1])) * MIX_2
    return (z ^ (z >> SHIFTS[2])) >> SHIFTS[3]


def dropout(x, rate: float, key: int):
    """x * keep / (1 - rate), keep: draw >= rate * 2^32 for each element of x (flat index).
    The same key gives the same mask: Dropout's backward is dropout(dy, rate, key)."""
    keep = (dropout_draws(x.size, key) >= dropout_threshold(rate)).reshape(x.shape)
    real = x.dtype.type
    return np.where(keep, x * real(1 / (1 - rate)), real(0))


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
