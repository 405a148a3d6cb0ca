"""Exercise: inverted Dropout, forward (and so backward).

Check: ./run -m minicnn.check exercises/dropout.py
Solution: minicnn/backends/reference/elementwise.py
"""

import numpy as np  # noqa: F401

from minicnn.backends.reference.elementwise import (  # noqa: F401
    dropout_draws,
    dropout_threshold,
)


def dropout(x, rate, key):
    """y = x * keep / (1 - rate): element i of x (in flat order) is kept when its draw,
    dropout_draws(x.size, key)[i], is >= dropout_threshold(rate) -- with probability
    1 - rate -- and is 0 otherwise. The same key gives the same mask, so the backward is
    dropout(dy, rate, key). x any shape -> y, x's shape and dtype.
    """
    raise NotImplementedError("write dropout: see its docstring")
