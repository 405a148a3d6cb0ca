"""Dense (fully connected) layer: a batch of rows times a weight matrix.

    forward:   y = x W + b                   x (N, D), W (D, U), b (U,), y (N, U)
    backward:  dx = dy W^T,  dW = x^T dy,  db = sum over the batch of dy

``relu=True`` fuses the layer's ReLU into the product (y = max(x W + b, 0)); the backward
then takes that output to send dy through the ReLU first.
"""

from __future__ import annotations

import numpy as np


def through_relu(dy, relu_output):
    """The gradient before a fused ReLU: dy where its output was positive, else 0."""
    return dy if relu_output is None else dy * (relu_output > 0)


def dense_forward(x, w, b, relu=False):
    """y = x W + b, x (N, D), W (D, U); b None: no bias; ``relu``: max(y, 0)."""
    y = x @ w if b is None else x @ w + b
    return np.maximum(y, 0) if relu else y


def dense_backward(x, w, dy, need_dx=True, relu_output=None):
    """dx = dy W^T (None without ``need_dx``), dW = x^T dy, db = sum over the batch of dy
    (first through the fused ReLU when ``relu_output`` is given)."""
    dy = through_relu(dy, relu_output)
    return (dy @ w.T if need_dx else None), x.T @ dy, dy.sum(axis=0)
