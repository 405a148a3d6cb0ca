"""Batch normalization on (M, C) rows: per-chunk partial sums (float64, added in a fixed
order), then element-wise passes (the reference normalization.py)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .chunks import chunk_rows
from .jit import JIT


@njit(parallel=True, **JIT)
def column_sums(a, b, gamma, beta, relu, chunks, parts):
    """parts[chunk, 0] = sum of a's rows, parts[chunk, 1] = sum of (a * b)'s rows; relu: a is
    first zeroed where gamma b + beta <= 0 (BatchNorm's backward with the ReLU fused)."""
    m, c = a.shape
    for chunk in prange(chunks):
        lo, hi = chunk_rows(chunk, chunks, m)
        sums, products = np.zeros(c), np.zeros(c)  # the chunk's own: kept out of parts
        for r in range(lo, hi):
            for k in range(c):
                v = a[r, k]
                if relu:
                    v = v if b[r, k] * gamma[k] + beta[k] > 0 else 0.0
                sums[k] += v
                products[k] += v * b[r, k]
        parts[chunk, 0] = sums
        parts[chunk, 1] = products


@njit(parallel=True, **JIT)
def centred_squares(x, mean, chunks, parts):
    """parts[chunk, k] = sum over the chunk's rows of (x - mean)^2."""
    m, c = x.shape
    for chunk in prange(chunks):
        lo, hi = chunk_rows(chunk, chunks, m)
        squares = np.zeros(c)
        for r in range(lo, hi):
            for k in range(c):
                d = x[r, k] - mean[k]
                squares[k] += d * d
        parts[chunk] = squares


@njit(parallel=True, **JIT)
def normalize(x, mean, scale, gamma, beta, relu, x_hat, y):
    """x_hat = (x - mean) * scale; y = gamma x_hat + beta, relu: max(y, 0)
    (scale = 1 / sqrt(var + eps))."""
    m, c = x.shape
    for r in prange(m):
        for k in range(c):
            v = (x[r, k] - mean[k]) * scale[k]
            x_hat[r, k] = v
            out = v * gamma[k] + beta[k]
            y[r, k] = max(out, 0.0) if relu else out


@njit(parallel=True, **JIT)
def batchnorm_dx(x_hat, dy, scale, mean_dy, mean_dy_xhat, gamma, beta, relu, dx):
    """dx = scale (dy - mean(dy) - x_hat mean(dy x_hat)) (scale = gamma / sqrt(var + eps));
    relu: dy is first zeroed where gamma x_hat + beta <= 0."""
    m, c = dy.shape
    for r in prange(m):
        for k in range(c):
            g = dy[r, k]
            if relu:
                g = g if x_hat[r, k] * gamma[k] + beta[k] > 0 else 0.0
            dx[r, k] = scale[k] * (g - mean_dy[k] - x_hat[r, k] * mean_dy_xhat[k])
