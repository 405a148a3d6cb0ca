"""Exercise: a dense (fully connected) layer, forward and backward.

Check: ./run -m minicnn.check exercises/dense.py
Solution: minicnn/backends/reference/dense.py
"""

import numpy as np  # noqa: F401  (you will need it)


def dense_forward(x, w, b, relu=False):
    """y = x W + b, then max(y, 0) when ``relu``.

    x (N, D), w (D, U), b (U,) or None (no bias) -> y (N, U).
    """
    raise NotImplementedError("write dense_forward: see its docstring")


def dense_backward(x, w, dy, need_dx=True, relu_output=None):
    """Gradients of L with respect to x, W and b, given dy = dL/dy (N, U).

    dx = dy W^T (N, D), or None when ``need_dx`` is False; dW = x^T dy (D, U);
    db = dy summed over the batch (U,). ``relu_output``, when given, is the forward's output
    with ``relu=True``: first set dy to 0 where it was not positive.
    Returns (dx, dw, db).
    """
    raise NotImplementedError("write dense_backward: see its docstring")
