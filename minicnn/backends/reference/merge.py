"""The merge layers' kernels: Add (a skip connection) and Concatenate.

A graph whose tensor feeds two layers gets a gradient from each; the backward adds them
with ``add_forward`` too (``fusion.Plan.backward``).
"""

from __future__ import annotations

import numpy as np


def add_forward(a, b):
    """y = a + b, same shapes."""
    return a + b


def add_backward(dy):
    """dy/da = dy/db = 1: each input's gradient is dy itself. The same array goes to both
    (no kernel writes into its inputs, so the branches can share it)."""
    return dy, dy


def concatenate_forward(a, b):
    """a (M, Ca, K) and b (M, Cb, K) side by side -> y (M, Ca + Cb, K)."""
    return np.concatenate([a, b], axis=1)


def concatenate_backward(dy, split):
    """dy (M, Ca + Cb, K) -> da = dy[:, :split], db = dy[:, split:] (new arrays)."""
    return dy[:, :split].copy(), dy[:, split:].copy()
