"""Small element-wise kernels: Dropout's mask, AdamW's decay and the weight penalties."""

from __future__ import annotations

import numpy as np


def multiply(a, b):
    """a * b element-wise, same shapes (Dropout applies its scaled mask with it)."""
    return a * b


def add_scaled(y, x, alpha: float) -> None:
    """y <- y + alpha x, in place (AdamW's decoupled weight decay: p <- p - lr wd p)."""
    y += alpha * x


def weight_penalty(w, l1: float, l2: float, g=None) -> float:
    """l1 sum|w| + l2 sum w^2; with a gradient g, also g += l1 sign(w) + 2 l2 w in place."""
    if g is not None:
        g += l1 * np.sign(w) + 2 * l2 * w
    return float(l1 * np.abs(w).sum() + l2 * (w * w).sum())
