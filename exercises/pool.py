"""Exercise: max-pooling, forward and backward.

Check: ./run -m minicnn.check exercises/pool.py
Solution: minicnn/backends/reference/pool.py (and naive.py's loops).
"""

import numpy as np  # noqa: F401

from minicnn.backends.shapes import conv_geometry  # noqa: F401


def maxpool2d_forward(x, pool, stride, padding="valid"):
    """y[n, i, j, c] = the max of x's (ph, pw) window at (i*sh, j*sw); "same" padding pads
    with -inf so that padding never wins. Returns (y, cache): the cache is whatever your
    backward needs (e.g. where each maximum was). On ties the first maximum, reading the
    window row by row, wins.
    """
    raise NotImplementedError("write maxpool2d_forward: see its docstring")


def maxpool2d_backward(dy, cache, x_shape, pool, stride, padding="valid"):
    """dx of shape ``x_shape``: each dy goes to the pixel that won its window (added up
    where windows overlap); every other pixel gets 0.
    """
    raise NotImplementedError("write maxpool2d_backward: see its docstring")
