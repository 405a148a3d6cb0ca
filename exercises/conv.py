"""Exercise: 2-D convolution with stride and padding, forward and backward.

Check: ./run -m minicnn.check exercises/conv.py
Solution: minicnn/backends/reference/conv.py (im2col) and naive.py (the loops). Start
with loops; make them fast later.
"""

import numpy as np  # noqa: F401

from minicnn.backends.shapes import conv_geometry  # noqa: F401  (output size and padding)


def conv2d_forward(x, w, b, stride, padding):
    """y[n, i, j, f] = b[f] + sum over di, dj, c of
    xpad[n, i*sh + di, j*sw + dj, c] * w[di, dj, c, f].

    x (N, H, W, C), w (kh, kw, C, F), b (F,) or None, stride (sh, sw), padding "valid" or
    "same" (TensorFlow's rule: ``conv_geometry(H, W, kh, kw, stride, padding)`` gives the
    output size and the zeros to add on each side) -> y (N, OH, OW, F).
    """
    raise NotImplementedError("write conv2d_forward: see its docstring")


def conv2d_backward(x, w, dy, stride, padding):
    """Gradients of L given dy = dL/dy (N, OH, OW, F): every multiply-add of the forward
    sends dy back to both factors, dx[pixel] += dy w and dw[tap] += dy x; db = dy summed
    over N, OH, OW.
    Returns (dx, dw, db).
    """
    raise NotImplementedError("write conv2d_backward: see its docstring")
