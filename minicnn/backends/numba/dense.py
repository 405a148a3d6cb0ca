"""Dense layers per chunk of rows: y = x W (BLAS) + b, and the backward products."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .chunks import _add_bias, _chunk_rows, _output_gradient_rows
from .jit import JIT

# ----------------------------------------------------------------------------- dense


@njit(parallel=True, **JIT)
def _dense_forward(x, w, bias, relu, y, chunks):
    """Per chunk of rows: y = x W (BLAS) + bias (then the ReLU)."""
    n = x.shape[0]
    for chunk in prange(chunks):
        lo, hi = _chunk_rows(chunk, chunks, n)
        if lo < hi:
            np.dot(x[lo:hi], w, y[lo:hi])
            _add_bias(y, bias, relu, lo, hi)


@njit(parallel=True, **JIT)
def _dense_backward(x, w, dy, relu, relu_out, masked, dx, dw, db_parts, need_dx, chunks):
    """Per chunk of rows: dy through the ReLU and its bias sums, dx = dy W^T; then per chunk
    of W's rows: dW[k0:k1] = x[:, k0:k1]^T dy, so no thread's partial dW needs adding up."""
    n, k = x.shape
    for chunk in prange(chunks):
        lo, hi = _chunk_rows(chunk, chunks, n)
        g = _output_gradient_rows(dy, relu, relu_out, masked, lo, hi, db_parts[chunk])
        if need_dx and lo < hi:
            np.dot(g[lo:hi], w.T, dx[lo:hi])
    g = masked if relu else dy
    for chunk in prange(chunks):
        k0, k1 = _chunk_rows(chunk, chunks, k)
        if k0 < k1:
            np.dot(np.ascontiguousarray(x[:, k0:k1]).T, g, dw[k0:k1])


