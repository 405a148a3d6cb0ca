"""Exercise: a dense (fully connected) layer, forward and backward.

Check: ./run -m minicnn.check exercises/dense.py
Solution: minicnn/backends/reference/dense.py
"""

import numpy as np  # noqa: F401  (you will need it)


def dense_forward(x, w, b):
    """y = x W + b.

    x (N, D), w (D, U), b (U,) or None (no bias) -> y (N, U).
    """
    raise NotImplementedError("write dense_forward: see its docstring")


def dense_backward(x, w, dy):
    """Gradients of L with respect to x, W and b, given dy = dL/dy (N, U).

    dx = dy W^T (N, D); dW = x^T dy (D, U); db = dy summed over the batch (U,).
    Returns (dx, dw, db).
    """
    raise NotImplementedError("write dense_backward: see its docstring")
