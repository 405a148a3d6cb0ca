"""Max-pooling on the device (average pooling runs on the host)."""

from __future__ import annotations

import numpy as np
from numba import cuda

from ..reference import pool as ref_pool
from ..shapes import pool_geometry
from .launch import flat_view, jit_kernel, run_kernel, unravel_nhwc
from .memory import empty_device, fill_device, host_fallback


@jit_kernel("void({t}[:, :, :, ::1], {t}[:, :, :, ::1], int32[:, :, :, ::1], int64, int64, int64, "
        "int64)")
def _maxpool_forward(x, y, arg, ph, pw, sh, sw):
    idx = cuda.grid(1)
    if idx >= y.size:
        return
    b, i, j, ch = unravel_nhwc(idx, y.shape[1], y.shape[2], y.shape[3])
    best = x[b, i * sh, j * sw, ch]
    best_k = 0
    for di in range(ph):
        for dj in range(pw):
            v = x[b, i * sh + di, j * sw + dj, ch]
            if v > best or (v != v and best == best):  # a NaN wins, as in np.argmax
                best = v
                best_k = di * pw + dj
    y[b, i, j, ch] = best
    arg[b, i, j, ch] = best_k


@jit_kernel("void({t}[:, :, :, ::1], int32[:, :, :, ::1], {t}[:, :, :, ::1], int64, int64, int64)")
def _maxpool_backward(dy, arg, dx, pw, sh, sw):
    """Scatter each output gradient onto its winner (atomic: windows may overlap)."""
    idx = cuda.grid(1)
    if idx >= dy.size:
        return
    b, i, j, ch = unravel_nhwc(idx, dy.shape[1], dy.shape[2], dy.shape[3])
    k = arg[b, i, j, ch]
    cuda.atomic.add(dx, (b, i * sh + k // pw, j * sw + k % pw, ch), dy[b, i, j, ch])


def maxpool2d_forward(x, pool, stride, padding="valid"):
    if padding != "valid":  # the -inf padding lives in the reference
        return host_fallback(ref_pool.maxpool2d_forward)(x, pool, stride, padding)
    n, h, w, c = x.shape
    oh, ow = pool_geometry(h, w, pool, stride)
    y = empty_device((n, oh, ow, c), x.dtype)
    arg = empty_device((n, oh, ow, c), np.int32)
    run_kernel(_maxpool_forward, y.size, x, y, arg, pool[0], pool[1], stride[0], stride[1])
    return y, arg


@jit_kernel("void({t}[:, :, :, ::1], int32[:, :, :, ::1], {t}[:, :, :, ::1], int64, int64, int64, "
        "int64)")
def _maxpool_backward_disjoint(dy, arg, dx, ph, pw, sh, sw):
    """Windows that do not overlap: each input pixel lies in at most one window, so it
    gathers its gradient (no zero-fill, no atomics)."""
    idx = cuda.grid(1)
    if idx >= dx.size:
        return
    b, y, xx, ch = unravel_nhwc(idx, dx.shape[1], dx.shape[2], dx.shape[3])
    i, j = y // sh, xx // sw
    di, dj = y - i * sh, xx - j * sw
    inside = i < dy.shape[1] and j < dy.shape[2] and di < ph and dj < pw
    if inside and arg[b, i, j, ch] == di * pw + dj:
        dx[b, y, xx, ch] = dy[b, i, j, ch]
    else:
        dx[b, y, xx, ch] = 0


def maxpool2d_backward(dy, cache, x_shape, pool, stride, padding="valid"):
    if padding != "valid":
        return host_fallback(ref_pool.maxpool2d_backward)(dy, cache, x_shape, pool, stride,
                                                           padding)
    dx = empty_device(x_shape, dy.dtype)
    if stride[0] >= pool[0] and stride[1] >= pool[1]:
        run_kernel(_maxpool_backward_disjoint, dx.size, dy, cache, dx, pool[0], pool[1],
                stride[0], stride[1])
    else:
        run_kernel(fill_device, dx.size, flat_view(dx), 0.0)
        run_kernel(_maxpool_backward, dy.size, dy, cache, dx, pool[1], stride[0], stride[1])
    return dx


