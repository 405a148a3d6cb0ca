"""Exercise: a GPU kernel of your own, with numba.cuda (MiniTorch module 4).

One GPU thread per output element: thread (i, j) of a 2-D grid computes y[i, j] = b[j] +
sum_k x[i, k] w[k, j]. No GPU needed: Numba's simulator runs every thread as a Python
thread (slowly, so the checker's shapes are small).

Check: NUMBA_ENABLE_CUDASIM=1 ./run -m minicnn.check exercises/cuda_dense.py
Train on it: with minicnn.use_backend(exercises.cuda_dense): model.fit(...) (same variable)
Solution: tour chapter 8 (docs/tour/08-the-gpu.md) launches one; minicnn's own, tiled in
shared memory, is minicnn/backends/cuda/matmul.py.
"""

import numpy as np  # noqa: F401
from numba import cuda  # noqa: F401


# @cuda.jit
def _dense_kernel(x, w, b, y):
    """One thread: (i, j) = cuda.grid(2); if it lies inside y, y[i, j] = b[j] + the sum over
    k of x[i, k] * w[k, j]. Decorate it with @cuda.jit."""
    raise NotImplementedError("write _dense_kernel: see its docstring")


def dense_forward(x, w, b):
    """x (N, D), w (D, U), b (U,) or None -> y (N, U), a NumPy array of x's dtype: copy x, w
    and b to the device (cuda.to_device), make y there (cuda.device_array), launch enough
    blocks of, say, 8 x 8 threads to cover y (_dense_kernel[blocks, threads](...)), and copy
    y back (y.copy_to_host())."""
    raise NotImplementedError("write dense_forward: see its docstring")
