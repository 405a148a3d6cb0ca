"""Exercise: a parallel CPU kernel of your own, with Numba's prange (MiniTorch module 3).

Write the Dense forward as three loops over (row, unit, input), compiled by Numba, the rows
shared out among the CPU's threads by ``prange``: each row of y is written by one thread
only, so the threads never need to wait for each other.

Check: ./run -m minicnn.check exercises/parallel_dense.py
Train on it: with minicnn.use_backend(exercises.parallel_dense): model.fit(...)
Solution: tour chapter 7 (docs/tour/07-fast-on-a-cpu.md) writes one; minicnn's own,
made fast, is minicnn/backends/numba/jit.py.
"""

import numpy as np  # noqa: F401
from numba import njit, prange  # noqa: F401


# @njit(parallel=True)
def _dense_rows(x, w, b, y):
    """y[i, j] = b[j] + sum_k x[i, k] w[k, j], for every row i in ``prange(x.shape[0])``.
    Decorate it with @njit(parallel=True) once it works in plain Python."""
    raise NotImplementedError("write _dense_rows: see its docstring")


def dense_forward(x, w, b):
    """x (N, D), w (D, U), b (U,) or None -> y (N, U), x's dtype: allocate y (np.empty),
    pass a bias of zeros when b is None (Numba compiles one version per argument type), and
    let _dense_rows fill it."""
    raise NotImplementedError("write dense_forward: see its docstring")
