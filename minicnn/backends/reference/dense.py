"""Dense (fully connected) layer: a batch of rows times a weight matrix.

    forward:   y = x W + b                   x (N, D), W (D, U), b (U,), y (N, U)
    backward:  dx = dy W^T,  dW = x^T dy,  db = sum over the batch of dy
"""

from __future__ import annotations


def dense_forward(x, w, b):
    """y = x W + b, x (N, D), W (D, U); b None: no bias."""
    return x @ w if b is None else x @ w + b


def dense_backward(x, w, dy):
    """dx = dy W^T, dW = x^T dy, db = sum over the batch of dy."""
    return dy @ w.T, x.T @ dy, dy.sum(axis=0)
