"""Convolutions of one input channel (a first layer), where the chunk-wide window matrix
would have only kh*kw columns and its product would run far below peak.

One image at a time: copy it into a zero-padded plane, copy the plane's windows tap-major
into X (taps, pixels), one strided row per tap, small enough to stay in cache, and multiply
per image with BLAS: Y = X^T W, [dW; db] += [X; 1] G (a row of ones below X gives the bias
gradient), dX = W G^T. With a MaxPool2D after the layer the output is pooled image by
image while it is in cache (``_pool_rows``), never stored whole, and the backward sends
each pooled gradient to its window's winner (``_unpool_gradient``).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .blas import matmul
from .chunks import add_bias, chunk_rows
from .jit import JIT


@njit(**JIT)
def _padded_plane(x, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w):
    """A zeroed (rows, cols) plane that holds one image of x (N, H, W, 1) at (pad_top,
    pad_left) and every tap the output reads."""
    rows = max((out_h - 1) * sh + kh, x.shape[1] + pad_top)
    cols = max((out_w - 1) * sw + kw, x.shape[2] + pad_left)
    return np.zeros((rows, cols), dtype=x.dtype)


@njit(**JIT)
def _pad_image(x, b, pad_top, pad_left, plane):
    """plane[pad_top + y, pad_left + x] = x[b, y, x, 0] (the padding stays zero)."""
    for yy in range(x.shape[1]):
        for xx in range(x.shape[2]):
            plane[pad_top + yy, pad_left + xx] = x[b, yy, xx, 0]


@njit(**JIT)
def _plane_windows(plane, kh, kw, sh, sw, out_h, out_w, xt):
    """xt[di*kw + dj, i*out_w + j] = plane[i*sh + di, j*sw + dj]: an image's windows, tap-major."""
    for di in range(kh):
        for dj in range(kw):
            for i in range(out_h):
                if sw == 1:  # contiguous: a vectorised copy
                    for j in range(out_w):
                        xt[di * kw + dj, i * out_w + j] = plane[i * sh + di, j + dj]
                else:
                    for j in range(out_w):
                        xt[di * kw + dj, i * out_w + j] = plane[i * sh + di, j * sw + dj]


@njit(**JIT)
def _plane_col2im(dxt, kh, kw, sh, sw, out_h, out_w, dplane):
    """dplane = the sum of the window entries dxt (taps, pixels) that read each point."""
    dplane[:] = 0.0
    for di in range(kh):
        for dj in range(kw):
            for i in range(out_h):
                for j in range(out_w):
                    dplane[i * sh + di, j * sw + dj] += dxt[di * kw + dj, i * out_w + j]


@njit(parallel=True, **JIT)
def plane_conv_forward(x, w2, bias, relu, geometry, pool, y, arg, chunks):
    """Per image: its windows X (taps, pixels), z = X^T W (BLAS) + bias (then the ReLU) into
    its rows of y (N, out_h, out_w, F); or with a pool (pool_h > 0), into a buffer that
    max-pooling reads while it is in cache: y (N, out_h // pool_h, out_w // pool_w, F) and
    arg (its window offsets) are the pooled output. ``geometry``: (kh, kw, sh, sw, pad_top,
    pad_left, out_h, out_w); ``pool``: (pool_h, pool_w), (0, 0) for none."""
    kh, kw, sh, sw, pad_top, pad_left, out_h, out_w = geometry
    pool_h, pool_w = pool
    n, per_image, f = x.shape[0], out_h * out_w, w2.shape[1]
    for chunk in prange(chunks):
        lo, hi = chunk_rows(chunk, chunks, n)
        plane = _padded_plane(x, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w)
        xt = np.empty((kh * kw, per_image), dtype=x.dtype)
        z = np.empty((per_image if pool_h else 0, f), dtype=x.dtype)
        for b in range(lo, hi):
            _pad_image(x, b, pad_top, pad_left, plane)
            _plane_windows(plane, kh, kw, sh, sw, out_h, out_w, xt)
            if pool_h:
                matmul(xt.T, w2, z)
                _pool_rows(z, bias, relu, out_w, pool_h, pool_w, y, arg, b)
            else:
                z2 = y[b].reshape(per_image, f)
                matmul(xt.T, w2, z2)
                add_bias(z2, bias, relu, 0, per_image)


# A convolution's output max-pooled as it is made (pool-sized windows, 'valid'; Sequential
# fuses a Conv2D and the MaxPool2D after it): the kernels go through each window's pixels
# k = 0, 1, ... (offset di * pool_w + dj) with ``keep_max``, and the backward sends each
# pooled gradient to its winner with ``send_to_winner``.


@njit(inline="always", **JIT)
def keep_max(values, bias, relu, k, best, where):
    """Pixel k of a pooling window: its channels values (F,) + bias (then the ReLU) replace
    best (F,) where they beat it, and where (F,) = k there (k = 0 always: first max wins; a
    NaN beats every number, as in ``maxpool_forward``). ``where`` is a window's int32
    buffer, narrowed into the int8 offsets by ``narrow`` once the window is done (a select
    vectorises when its operands are as wide as the floats: docs/performance.md)."""
    for e in range(values.shape[0]):
        v = values[e] + bias[e]
        v = 0.0 if relu and v < 0.0 else v
        current = best[e]
        better = (k == 0) | (v > current) | ((v != v) & (current == current))
        best[e] = v if better else current
        where[e] = k if better else where[e]


@njit(inline="always", **JIT)
def narrow(where, arg):
    """arg (F,) = a window's winners ``where`` (int32), in arg's narrower dtype."""
    for e in range(where.shape[0]):
        arg[e] = where[e]


@njit(inline="always", **JIT)
def send_to_winner(dy, pooled, arg, relu, b, i, j, k, g):
    """Pixel k of window (i, j) of image b: its gradient g (F,) = dy[b, i, j] where it won
    and (with the ReLU) the pooled output is > 0, else 0."""
    for e in range(g.shape[0]):
        keep = (arg[b, i, j, e] == k) & ((pooled[b, i, j, e] > 0) | (not relu))
        g[e] = dy[b, i, j, e] if keep else 0.0


@njit(**JIT)
def _pool_rows(z, bias, relu, out_w, pool_h, pool_w, y, arg, b):
    """y[b], arg[b] = the max-pooling of an image's rows z (out_h * out_w, F) + bias (then
    the ReLU)."""
    where = np.empty(y.shape[3], np.int32)
    for i in range(y.shape[1]):
        for j in range(y.shape[2]):
            for di in range(pool_h):  # (k = di * pool_w + dj: no division per pixel)
                for dj in range(pool_w):
                    r = (i * pool_h + di) * out_w + j * pool_w + dj
                    keep_max(z[r], bias, relu, di * pool_w + dj, y[b, i, j], where)
            narrow(where, arg[b, i, j])


@njit(**JIT)
def _unpool_gradient(dy, pooled, arg, b, relu, pool_h, pool_w, out_w, g):
    """g (out_h * out_w, F) = image b's gradient before the pooling and the ReLU: dy at each
    window's winner (``send_to_winner``), 0 everywhere else."""
    if g.shape[0] // out_w % pool_h or out_w % pool_w:
        g[:] = 0.0  # rows or columns no window covers
    for i in range(dy.shape[1]):
        for j in range(dy.shape[2]):
            for di in range(pool_h):
                for dj in range(pool_w):
                    r = (i * pool_h + di) * out_w + j * pool_w + dj
                    send_to_winner(dy, pooled, arg, relu, b, i, j, di * pool_w + dj, g[r])


@njit(parallel=True, **JIT)
def plane_conv_backward(x, w2, dy, relu, relu_out, arg, geometry, pool, grads, need_dx, chunks):
    """Per image: G = its dy (N, out_h, out_w, F) through the ReLU (relu_out: the forward's
    output) -- or with a pool, dy and relu_out pooled (N, out_h // pool_h, ...) and sent back
    to the winners arg (``_unpool_gradient``) -- its windows X with a row of ones below (xt:
    taps + 1 rows), [dW; db] += [X; 1] G (BLAS, then added in float64); with need_dx,
    dX = W G^T (taps, pixels) added back into a padded plane whose inside is the image's dx.
    ``geometry`` and ``pool`` as for the forward; ``grads``: (dw_parts, db_parts, dx)."""
    kh, kw, sh, sw, pad_top, pad_left, out_h, out_w = geometry
    pool_h, pool_w = pool
    dw_parts, db_parts, dx = grads[0], grads[1], grads[2]
    n, h, w, f = x.shape[0], x.shape[1], x.shape[2], w2.shape[1]
    per_image, taps = out_h * out_w, kh * kw
    for chunk in prange(chunks):
        lo, hi = chunk_rows(chunk, chunks, n)
        plane = _padded_plane(x, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w)
        dplane, xt = np.empty_like(plane), np.ones((taps + 1, per_image), dtype=x.dtype)
        g2, part = np.empty((per_image, f), dtype=x.dtype), np.empty((taps + 1, f), dtype=x.dtype)
        dw, db = np.zeros(w2.shape), np.zeros(f)
        for b in range(lo, hi):
            if pool_h:
                _unpool_gradient(dy, relu_out, arg, b, relu, pool_h, pool_w, out_w, g2)
            else:
                dyb, relu_b = dy[b].reshape(per_image, f), relu_out[b].reshape(per_image, f)
                for r in range(per_image):
                    for u in range(f):
                        v = dyb[r, u]
                        g2[r, u] = v * (relu_b[r, u] > 0) if relu else v
            _pad_image(x, b, pad_top, pad_left, plane)
            _plane_windows(plane, kh, kw, sh, sw, out_h, out_w, xt)
            matmul(xt, g2, part)
            dw += part[:taps]
            db += part[taps]
            if need_dx:
                matmul(w2, g2.T, xt[:taps])
                _plane_col2im(xt, kh, kw, sh, sw, out_h, out_w, dplane)
                dx[b, :, :, 0] = dplane[pad_top:pad_top + h, pad_left:pad_left + w]
        dw_parts[chunk] = dw
        db_parts[chunk] = db

