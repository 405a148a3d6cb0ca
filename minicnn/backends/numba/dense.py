"""Dense layers per chunk of rows: y = x W (BLAS) + b, and the backward products."""

from __future__ import annotations

from numba import njit, prange

from .blas import matmul
from .chunks import add_bias, chunk_rows, output_gradient_rows
from .jit import JIT

# ----------------------------------------------------------------------------- dense


@njit(parallel=True, **JIT)
def dense_forward(x, w, bias, relu, y, parts, split, chunks):
    """y = x W (BLAS) + bias (then the ReLU). Per chunk of rows; or, with ``split``, per
    chunk of W's rows: parts[c] = x[:, k0:k1] W[k0:k1], then y = their sum + bias (each
    thread reads only its rows of W: compiled.split_by_weight_rows says when)."""
    n, k = x.shape
    if not split:
        for chunk in prange(chunks):
            lo, hi = chunk_rows(chunk, chunks, n)
            if lo < hi:
                matmul(x[lo:hi], w, y[lo:hi])
                add_bias(y, bias, relu, lo, hi)
        return
    for chunk in prange(chunks):
        k0, k1 = chunk_rows(chunk, chunks, k)
        matmul(x[:, k0:k1], w[k0:k1], parts[chunk])
    for r in prange(n):
        for f in range(y.shape[1]):
            total = parts[0, r, f]
            for chunk in range(1, chunks):  # a fixed order: the same bits every run
                total += parts[chunk, r, f]
            y[r, f] = total
        add_bias(y, bias, relu, r, r + 1)


@njit(parallel=True, **JIT)
def dense_backward(x, w, dy, relu, relu_out, masked, dx, dw, db_parts, need_dx, split,
                    chunks):
    """Per chunk of rows: dy through the ReLU and its bias sums (and, without ``split``,
    dx = dy W^T); then per chunk of W's rows: dW[k0:k1] = x[:, k0:k1]^T dy, so no thread's
    partial dW needs adding up (and, with ``split``, dx[:, k0:k1] = dy W[k0:k1]^T: each
    thread reads only its rows of W)."""
    n, k = x.shape
    for chunk in prange(chunks):
        lo, hi = chunk_rows(chunk, chunks, n)
        g = output_gradient_rows(dy, relu, relu_out, masked, lo, hi, db_parts[chunk])
        if need_dx and not split and lo < hi:
            matmul(g[lo:hi], w.T, dx[lo:hi])
    g = masked if relu else dy
    for chunk in prange(chunks):
        k0, k1 = chunk_rows(chunk, chunks, k)
        if k0 < k1:
            matmul(x[:, k0:k1].T, g, dw[k0:k1])
            if need_dx and split:
                matmul(g, w[k0:k1].T, dx[:, k0:k1])
