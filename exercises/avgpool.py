"""Exercise: average pooling, forward and backward.

Check: ./run -m minicnn.check exercises/avgpool.py
Solution: minicnn/backends/reference/pool.py
"""

import numpy as np  # noqa: F401

from minicnn.backends.shapes import conv_geometry  # noqa: F401


def avgpool2d_forward(x, pool, stride, padding="valid"):
    """y[n, i, j, c] = the mean of x's (ph, pw) window at (i*sh, j*sw), over the window's
    pixels inside the image ("same" padding adds none to the mean, as Keras).
    x (N, H, W, C) -> y (N, OH, OW, C).
    """
    raise NotImplementedError("write avgpool2d_forward: see its docstring")


def avgpool2d_backward(dy, x_shape, pool, stride, padding="valid"):
    """dx of shape ``x_shape``: each dy[n, i, j, c] shared out equally among its window's
    pixels inside the image (added up where windows overlap).
    """
    raise NotImplementedError("write avgpool2d_backward: see its docstring")
