"""Numba CPU backend: the reference's algorithm as parallel JIT loops.

Convolution stays im2col + a matrix product (a 3x3 one with a big enough output:
Winograd F(4x4, 3x3), winograd.py), but the batch is cut into one chunk of images per
thread and each thread does the whole pipeline on its chunk: build its rows of the
window matrix, multiply them with BLAS (np.dot inside the JIT, single-threaded), and add
the bias (forward) or add its windows back into its images (backward). One pool of
threads does everything, so BLAS's threads and Numba's never fight over the cores
(measured on 2 cores: two pools oversubscribing each other ran 10x slower), and the
products run side by side at ~165 GFLOP/s where one multi-threaded BLAS call on these
skinny shapes reaches ~100. ``session()`` sets BLAS to one thread while a model runs.

Arrays are channels-last and C-contiguous, so the innermost loops run over channels,
the contiguous axis. Kernels compile once per dtype (float32 and float64) and are cached
on disk (cache=True) so a new process starts fast. No fastmath: results match the
reference up to float rounding (sums are split per chunk, in a fixed order).
"""

from __future__ import annotations

import math
import warnings

import numba
import numpy as np
from numba import njit, prange

from . import chunked, numpy_ref
from .numpy_ref import LEAKY_SLOPE
from .shapes import require_same_shape
from .threads import blas_single_thread, chunks_for, cpu_threads

ON_DEVICE = False
SQRT_HALF = math.sqrt(0.5)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
# Shown when a model's first step is slow: Numba compiles the kernels on first use.
COMPILE_NOTICE = ("minicnn: compiling the numba kernels for this model (first run only; "
                  "they are cached on disk afterwards) ...")


def _cache_probe(x):
    return x


def _caching_works() -> bool:
    """Numba caches compiled kernels beside this file or in the user's cache folder; where
    neither is writable, compile in memory on every run rather than lose the backend."""
    try:
        njit(cache=True)(_cache_probe)
    except RuntimeError as exc:
        warnings.warn(f"minicnn: numba cannot cache its compiled kernels here ({exc}); they "
                      "are compiled in memory on every run. Set NUMBA_CACHE_DIR to a writable "
                      "folder to keep them.", RuntimeWarning, stacklevel=2)
        return False
    return True


JIT = {"cache": _caching_works(), "nogil": True}
# Numba sizes its pool from the host's CPU count; use the cores this process may run on.
numba.set_num_threads(min(numba.config.NUMBA_NUM_THREADS, cpu_threads()))


# ----------------------------------------------------------------------------- conv


def session():
    """While a model trains or predicts: BLAS on one thread, the parallelism is ours."""
    return blas_single_thread()


def _chunks(n: int) -> int:
    return chunks_for(n, numba.get_num_threads())


@njit(**JIT)
def _im2col_images(x, lo, hi, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w, cols):
    """Rows of images lo..hi: cols[(n, i, j), (di, dj, c)] = x[n, i*sh+di-pt, j*sw+dj-pl, c]."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    for b in range(lo, hi):
        for i in range(out_h):
            for j in range(out_w):
                row = (b * out_h + i) * out_w + j
                for di in range(kh):
                    y = i * sh + di - pad_top
                    for dj in range(kw):
                        xx = j * sw + dj - pad_left
                        base = (di * kw + dj) * c
                        if 0 <= y < h and 0 <= xx < w:
                            for ch in range(c):  # contiguous in both arrays
                                cols[row, base + ch] = x[b, y, xx, ch]
                        else:
                            for ch in range(c):
                                cols[row, base + ch] = 0.0


@njit(**JIT)
def _col2im_images(cols, lo, hi, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w, dx):
    """Images lo..hi of dx: the sum of the window entries that read each pixel."""
    h, w, c = dx.shape[1], dx.shape[2], dx.shape[3]
    for b in range(lo, hi):
        dx[b] = 0.0
        for i in range(out_h):
            for j in range(out_w):
                row = (b * out_h + i) * out_w + j
                for di in range(kh):
                    y = i * sh + di - pad_top
                    if y < 0 or y >= h:
                        continue
                    for dj in range(kw):
                        xx = j * sw + dj - pad_left
                        if xx < 0 or xx >= w:
                            continue
                        base = (di * kw + dj) * c
                        for ch in range(c):
                            dx[b, y, xx, ch] += cols[row, base + ch]


@njit(**JIT)
def _chunk_rows(chunk, chunks, n):
    """Rows lo..hi of the chunk-th of ``chunks`` near-equal runs of n rows (may be empty)."""
    step = (n + chunks - 1) // chunks
    return chunk * step, min(n, (chunk + 1) * step)


@njit(**JIT)
def _add_bias(y2, bias, relu, r0, r1):
    """Rows r0..r1 of y2 += bias, then max(., 0) when relu (the fused epilogue: one pass)."""
    for r in range(r0, r1):
        for f in range(y2.shape[1]):
            v = y2[r, f] + bias[f]
            y2[r, f] = 0.0 if relu and v < 0.0 else v  # (NaN stays NaN, as in the reference)


@njit(**JIT)
def _output_gradient_rows(dy2, relu, relu_out, masked, r0, r1, db):
    """Rows r0..r1 of the gradient before the fused ReLU: masked = dy where relu_out > 0,
    else 0 (when relu; else dy is used as it is), and db = their column sums (float64)."""
    db[:] = 0.0
    for r in range(r0, r1):
        for f in range(dy2.shape[1]):
            v = dy2[r, f]
            if relu:
                v = v * (relu_out[r, f] > 0)
                masked[r, f] = v
            db[f] += v
    return masked if relu else dy2


@njit(parallel=True, **JIT)
def _conv_forward(x, w2, bias, relu, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w, cols, y2,
                  chunks):
    """Per chunk of images: im2col, y = cols @ W (BLAS), y += bias (then the ReLU)."""
    n = x.shape[0]
    per_image = out_h * out_w
    for chunk in prange(chunks):
        lo, hi = _chunk_rows(chunk, chunks, n)
        if lo >= hi:
            continue
        _im2col_images(x, lo, hi, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w, cols)
        r0, r1 = lo * per_image, hi * per_image
        np.dot(cols[r0:r1], w2, y2[r0:r1])
        _add_bias(y2, bias, relu, r0, r1)


@njit(parallel=True, **JIT)
def _conv_backward(x, w2, dy2, relu, relu_out, masked, kh, kw, sh, sw, pad_top, pad_left, out_h,
                   out_w, cols, dcols, dw_parts, db_parts, dx, need_dx, chunks):
    """Per chunk: dy through the ReLU and its bias sums, im2col, dW_chunk = cols^T dy,
    dcols = dy W^T, col2im into its images."""
    n = x.shape[0]
    per_image = out_h * out_w
    for chunk in prange(chunks):
        lo, hi = _chunk_rows(chunk, chunks, n)
        r0, r1 = lo * per_image, hi * per_image
        g = _output_gradient_rows(dy2, relu, relu_out, masked, r0, r1, db_parts[chunk])
        if lo >= hi:
            dw_parts[chunk] = 0.0
            continue
        _im2col_images(x, lo, hi, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w, cols)
        np.dot(cols[r0:r1].T, g[r0:r1], dw_parts[chunk])
        if need_dx:
            np.dot(g[r0:r1], w2.T, dcols[r0:r1])
            _col2im_images(dcols, lo, hi, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w, dx)


# One input channel (a first layer): the chunk-wide window matrix would have K = kh*kw
# columns, and its product runs far below peak (measured 12-31 GFLOP/s); loops that vectorise
# over the filters reached ~8 GFLOP/s. So one image at a time: copy it into a zero-padded
# plane, copy the plane's windows tap-major into X (taps, pixels), one strided row per tap,
# small enough to stay in cache, and multiply per image with BLAS: Y = X^T W, [dW; db] +=
# [X; 1] G (a row of ones below X gives the bias gradient), dX = W G^T (cnn_b's conv1 at
# batch 32: forward 0.40 -> 0.16 ms, backward 0.52 -> 0.23 ms).


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
def _plane_conv_forward(x, w2, bias, relu, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w,
                        pool_h, pool_w, y, arg, chunks):
    """Per image: its windows X (taps, pixels), z = X^T W (BLAS) + bias (then the ReLU) into
    its rows of y (N, out_h, out_w, F); or with a pool (pool_h > 0), into a buffer that
    max-pooling reads while it is in cache: y (N, out_h // pool_h, out_w // pool_w, F) and
    arg (its window offsets) are the pooled output (cnn_b's first conv and pool at batch 64,
    0.56 + 0.72 ms -> 0.35 + 0.36 ms forward + backward)."""
    n, per_image, f = x.shape[0], out_h * out_w, w2.shape[1]
    for chunk in prange(chunks):
        lo, hi = _chunk_rows(chunk, chunks, n)
        plane = _padded_plane(x, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w)
        xt = np.empty((kh * kw, per_image), dtype=x.dtype)
        z = np.empty((per_image if pool_h else 0, f), dtype=x.dtype)
        for b in range(lo, hi):
            _pad_image(x, b, pad_top, pad_left, plane)
            _plane_windows(plane, kh, kw, sh, sw, out_h, out_w, xt)
            if pool_h:
                np.dot(xt.T, w2, z)
                _pool_rows(z, bias, relu, out_w, pool_h, pool_w, y, arg, b)
            else:
                z2 = y[b].reshape(per_image, f)
                np.dot(xt.T, w2, z2)
                _add_bias(z2, bias, relu, 0, per_image)


# A convolution's output max-pooled as it is made (pool-sized windows, 'valid'; Sequential
# fuses a Conv2D and the MaxPool2D after it): the kernels go through each window's pixels
# k = 0, 1, ... (offset di * pool_w + dj) with ``_keep_max``, and the backward sends each
# pooled gradient to its winner with ``_send_to_winner``.


@njit(inline="always", **JIT)
def _keep_max(values, bias, relu, k, y, arg, b, i, j):
    """Pixel k of window (i, j) of image b: its channels values (F,) + bias (then the ReLU)
    replace y[b, i, j] where they beat it, arg[b, i, j] = k there (k = 0 always: first max
    wins; a NaN beats every number, as in ``_maxpool_forward``)."""
    for e in range(values.shape[0]):
        v = values[e] + bias[e]
        v = 0.0 if relu and v < 0.0 else v
        best = y[b, i, j, e]
        if (k == 0) | (v > best) | ((v != v) & (best == best)):
            y[b, i, j, e] = v
            arg[b, i, j, e] = k


@njit(inline="always", **JIT)
def _send_to_winner(dy, pooled, arg, relu, b, i, j, k, g):
    """Pixel k of window (i, j) of image b: its gradient g (F,) = dy[b, i, j] where it won
    and (with the ReLU) the pooled output is > 0, else 0."""
    for e in range(g.shape[0]):
        keep = (arg[b, i, j, e] == k) & ((pooled[b, i, j, e] > 0) | (not relu))
        g[e] = dy[b, i, j, e] if keep else 0.0


@njit(**JIT)
def _pool_rows(z, bias, relu, out_w, pool_h, pool_w, y, arg, b):
    """y[b], arg[b] = the max-pooling of an image's rows z (out_h * out_w, F) + bias (then
    the ReLU)."""
    for i in range(y.shape[1]):
        for j in range(y.shape[2]):
            for di in range(pool_h):  # (k = di * pool_w + dj: no division per pixel)
                for dj in range(pool_w):
                    r = (i * pool_h + di) * out_w + j * pool_w + dj
                    _keep_max(z[r], bias, relu, di * pool_w + dj, y, arg, b, i, j)


@njit(**JIT)
def _unpool_gradient(dy, pooled, arg, b, relu, pool_h, pool_w, out_w, g):
    """g (out_h * out_w, F) = image b's gradient before the pooling and the ReLU: dy at each
    window's winner (``_send_to_winner``), 0 everywhere else."""
    if g.shape[0] // out_w % pool_h or out_w % pool_w:
        g[:] = 0.0  # rows or columns no window covers
    for i in range(dy.shape[1]):
        for j in range(dy.shape[2]):
            for di in range(pool_h):
                for dj in range(pool_w):
                    r = (i * pool_h + di) * out_w + j * pool_w + dj
                    _send_to_winner(dy, pooled, arg, relu, b, i, j, di * pool_w + dj, g[r])


@njit(parallel=True, **JIT)
def _plane_conv_backward(x, w2, dy, relu, relu_out, arg, kh, kw, sh, sw, pad_top, pad_left,
                         out_h, out_w, pool_h, pool_w, dw_parts, db_parts, dx, need_dx, chunks):
    """Per image: G = its dy (N, out_h, out_w, F) through the ReLU (relu_out: the forward's
    output) -- or with a pool, dy and relu_out pooled (N, out_h // pool_h, ...) and sent back
    to the winners arg (``_unpool_gradient``) -- its windows X with a row of ones below (xt:
    taps + 1 rows), [dW; db] += [X; 1] G (BLAS, then added in float64); with need_dx,
    dX = W G^T (taps, pixels) added back into a padded plane whose inside is the image's dx."""
    n, h, w, f = x.shape[0], x.shape[1], x.shape[2], w2.shape[1]
    per_image, taps = out_h * out_w, kh * kw
    for chunk in prange(chunks):
        lo, hi = _chunk_rows(chunk, chunks, n)
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
            np.dot(xt, g2, part)
            dw += part[:taps]
            db += part[taps]
            if need_dx:
                np.dot(w2, g2.T, xt[:taps])
                _plane_col2im(xt, kh, kw, sh, sw, out_h, out_w, dplane)
                dx[b, :, :, 0] = dplane[pad_top:pad_top + h, pad_left:pad_left + w]
        dw_parts[chunk] = dw
        db_parts[chunk] = db


# Winograd F(4x4, 3x3) (winograd.py has the math and the matrices). ``_transform`` applies
# one of those six matrices, written out, to the rows of s (rows, L): every row is a vector
# over channels (or taps), so the loops over e vectorise; its constants are in the arrays'
# dtype, so float32 stays float32. A tile transform applies it along both axes of a
# (rows, rows, channels) tile (``_sandwich``).
BT, B, AT, A, G, GT = range(6)  # which matrix: B^T, B = (B^T)^T, A^T, A, G, G^T


@njit(**JIT)
def _transform(kind, s, d):
    """d = M s for M = B^T, B (6 -> 6 rows), A^T (6 -> 4), A (4 -> 6), G (3 -> 6), G^T (6 -> 3)."""
    real = s.dtype.type
    two, four, five, eight = real(2.0), real(4.0), real(5.0), real(8.0)
    sixth, twelfth, quarter = real(1.0 / 6.0), real(1.0 / 12.0), real(0.25)
    if kind == BT:
        for e in range(s.shape[1]):
            s0, s1, s2, s3, s4, s5 = s[0, e], s[1, e], s[2, e], s[3, e], s[4, e], s[5, e]
            d[0, e] = four * s0 - five * s2 + s4
            d[1, e] = s3 + s4 - four * (s1 + s2)
            d[2, e] = s4 - s3 + four * (s1 - s2)
            d[3, e] = s4 - s2 + two * (s3 - s1)
            d[4, e] = s4 - s2 + two * (s1 - s3)
            d[5, e] = four * s1 - five * s3 + s5
    elif kind == B:
        for e in range(s.shape[1]):
            s0, s1, s2, s3, s4, s5 = s[0, e], s[1, e], s[2, e], s[3, e], s[4, e], s[5, e]
            d[0, e] = four * s0
            d[1, e] = four * (s2 - s1 + s5) + two * (s4 - s3)
            d[2, e] = -five * s0 - four * (s1 + s2) - s3 - s4
            d[3, e] = s1 - s2 + two * (s3 - s4) - five * s5
            d[4, e] = s0 + s1 + s2 + s3 + s4
            d[5, e] = s5
    elif kind == AT:
        for e in range(s.shape[1]):
            s0, s1, s2, s3, s4, s5 = s[0, e], s[1, e], s[2, e], s[3, e], s[4, e], s[5, e]
            d[0, e] = s0 + s1 + s2 + s3 + s4
            d[1, e] = s1 - s2 + two * (s3 - s4)
            d[2, e] = s1 + s2 + four * (s3 + s4)
            d[3, e] = s1 - s2 + eight * (s3 - s4) + s5
    elif kind == A:
        for e in range(s.shape[1]):
            s0, s1, s2, s3 = s[0, e], s[1, e], s[2, e], s[3, e]
            d[0, e] = s0
            d[1, e] = s0 + s1 + s2 + s3
            d[2, e] = s0 - s1 + s2 - s3
            d[3, e] = s0 + two * s1 + four * s2 + eight * s3
            d[4, e] = s0 - two * s1 + four * s2 - eight * s3
            d[5, e] = s3
    elif kind == G:
        for e in range(s.shape[1]):
            s0, s1, s2 = s[0, e], s[1, e], s[2, e]
            d[0, e] = quarter * s0
            d[1, e] = -sixth * (s0 + s1 + s2)
            d[2, e] = -sixth * (s0 - s1 + s2)
            d[3, e] = quarter * sixth * s0 + twelfth * s1 + sixth * s2
            d[4, e] = quarter * sixth * s0 - twelfth * s1 + sixth * s2
            d[5, e] = s2
    else:  # GT
        for e in range(s.shape[1]):
            s0, s1, s2, s3, s4, s5 = s[0, e], s[1, e], s[2, e], s[3, e], s[4, e], s[5, e]
            d[0, e] = quarter * s0 - sixth * (s1 + s2) + quarter * sixth * (s3 + s4)
            d[1, e] = sixth * (s2 - s1) + twelfth * (s3 - s4)
            d[2, e] = sixth * (s3 + s4 - s1 - s2) + s5


@njit(**JIT)
def _sandwich(kind, src, tmp, dst):
    """dst = M src M^T for tiles of vectors: src (k*k, ...) holds a k x k tile of vectors
    (everything after the first axis: tiles x channels), dst gets the r x r result in its
    first r*r rows. M along the tile's rows (src seen as (k, k*L)), then along each row of
    the result. tmp holds r*k rows; dst may be src (src is read only by the first pass)."""
    k = 3 if kind == G else 4 if kind == A else 6
    r = 3 if kind == GT else 4 if kind == AT else 6
    size = src[0].size
    flat_tmp = tmp.reshape(-1)[:r * k * size]
    _transform(kind, src.reshape(-1)[:k * k * size].reshape(k, k * size),
               flat_tmp.reshape(r, k * size))
    rows, out = flat_tmp.reshape(r, k, size), dst.reshape(-1)[:r * r * size].reshape(r, r, size)
    for a in range(r):
        _transform(kind, rows[a], out[a])


@njit(**JIT)
def _row_windows(x, b, ti, pad_top, pad_left, d):
    """d[k*6 + q, tj, :] = x[b, 4 ti + k - pad_top, 4 tj + q - pad_left, :] (0 outside the
    image): the 6x6 input windows of the tiles (ti, tj) of image b's tile row ti."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    for k in range(6):
        r = ti * 4 + k - pad_top
        for tj in range(d.shape[1]):
            for q in range(6):
                col = tj * 4 + q - pad_left
                if 0 <= r < h and 0 <= col < w:
                    for e in range(c):
                        d[k * 6 + q, tj, e] = x[b, r, col, e]
                else:
                    for e in range(c):
                        d[k * 6 + q, tj, e] = 0.0


# A block's transformed tiles v (36, tiles, C) and m (36, tiles, F) are too large for the
# core's caches, so every transform works on one row of tiles at a time in small buffers
# (36, tiles_w, L) (``rows[0]``, its temporary ``rows[1]``) and reads or writes the block's
# buffer once, not four times (cnn_b's conv2 at batch 32 on two threads: forward 0.53 ->
# 0.44 ms, backward 1.14 -> 1.00 ms).


@njit(**JIT)
def _copy_tiles(src, s0, dst, d0, count):
    """dst[:, d0 + j] = src[:, s0 + j] for j < count: a row of tiles into or out of a block."""
    for p in range(src.shape[0]):
        for j in range(count):
            for e in range(src.shape[2]):
                dst[p, d0 + j, e] = src[p, s0 + j, e]


@njit(**JIT)
def _input_transform(x, lo, hi, pad_top, pad_left, tiles_h, rows, v):
    """v[:, t] = B^T d B for the window d of every tile t of images lo..hi."""
    d, tiles_w = rows[0], rows.shape[2]
    for b in range(lo, hi):
        for ti in range(tiles_h):
            _row_windows(x, b, ti, pad_top, pad_left, d)
            _sandwich(BT, d, rows[1], d)
            t0 = ((b - lo) * tiles_h + ti) * tiles_w
            _copy_tiles(d, 0, v, t0, tiles_w)


@njit(**JIT)
def _output_transform(m, bias, relu, lo, hi, out_h, out_w, rows, pool_h, pool_w, y, arg):
    """y = A^T m A + bias (then the ReLU) at every tile's pixels inside the output (out_h,
    out_w); or with a pool (pool_h > 0, dividing the tile: every window inside one tile),
    y and arg max-pooled (``_keep_max``)."""
    f, tiles_h = bias.shape[0], (out_h + 3) // 4
    o, tiles_w = rows[0], rows.shape[2]
    for b in range(lo, hi):
        for ti in range(tiles_h):
            t0 = ((b - lo) * tiles_h + ti) * tiles_w
            _copy_tiles(m, t0, o, 0, tiles_w)
            _sandwich(AT, o, rows[1], o)
            if pool_h:
                _pool_tile_row(o, bias, relu, b, ti, pool_h, pool_w, y, arg)
                continue
            for r in range(min(4, out_h - ti * 4)):
                for tj in range(tiles_w):
                    for q in range(min(4, out_w - tj * 4)):
                        for e in range(f):
                            value = o[r * 4 + q, tj, e] + bias[e]
                            y[b, ti * 4 + r, tj * 4 + q, e] = \
                                0.0 if relu and value < 0.0 else value


@njit(**JIT)
def _pool_tile_row(o, bias, relu, b, ti, pool_h, pool_w, y, arg):
    """y[b], arg[b] at the windows inside row ti of output tiles o (pixel (r, q) of tile tj
    at o[r * 4 + q, tj]): the max-pooling of o + bias (then the ReLU)."""
    down, across = 4 // pool_h, 4 // pool_w  # windows per tile
    for pr in range(min(down, y.shape[1] - ti * down)):
        for tj in range(o.shape[1]):
            for pc in range(min(across, y.shape[2] - tj * across)):
                for di in range(pool_h):
                    for dj in range(pool_w):
                        point = (pr * pool_h + di) * 4 + pc * pool_w + dj
                        _keep_max(o[point, tj], bias, relu, di * pool_w + dj, y, arg, b,
                                  ti * down + pr, tj * across + pc)


@njit(**JIT)
def _unpool_tile_row(dy, pooled, arg, relu, b, ti, pool_h, pool_w, g, db):
    """Row ti of output tiles g (as in ``_pool_tile_row``) = the pooled gradient sent back to
    each window's winner (``_send_to_winner``), 0 elsewhere; db += the gradients sent."""
    down, across = 4 // pool_h, 4 // pool_w
    g[:16] = 0.0
    for pr in range(min(down, dy.shape[1] - ti * down)):
        i = ti * down + pr
        for tj in range(g.shape[1]):
            for pc in range(min(across, dy.shape[2] - tj * across)):
                j = tj * across + pc
                for di in range(pool_h):
                    for dj in range(pool_w):
                        point = (pr * pool_h + di) * 4 + pc * pool_w + dj
                        _send_to_winner(dy, pooled, arg, relu, b, i, j, di * pool_w + dj,
                                        g[point, tj])
                for e in range(dy.shape[3]):
                    db[e] += dy[b, i, j, e] * ((pooled[b, i, j, e] > 0) | (not relu))


@njit(**JIT)
def _output_gradient_transform(dy, relu, relu_out, lo, hi, out_h, out_w, rows, pool_h, pool_w,
                               arg, dm, db):
    """g = dy through the ReLU (0 past the output's edge; db += g) -- or with a pool, dy and
    relu_out pooled and sent back to the winners arg (``_unpool_tile_row``) --, dm = A g A^T
    per tile."""
    f, tiles_h = dy.shape[3], (out_h + 3) // 4
    g, tiles_w = rows[0], rows.shape[2]
    for b in range(lo, hi):
        for ti in range(tiles_h):
            if pool_h:
                _unpool_tile_row(dy, relu_out, arg, relu, b, ti, pool_h, pool_w, g, db)
            else:
                for r in range(4):
                    for tj in range(tiles_w):
                        for q in range(4):
                            i, j = ti * 4 + r, tj * 4 + q
                            if i >= out_h or j >= out_w:
                                g[r * 4 + q, tj] = 0.0
                                continue
                            for e in range(f):
                                value = dy[b, i, j, e]
                                if relu:
                                    value = value * (relu_out[b, i, j, e] > 0)
                                g[r * 4 + q, tj, e] = value
                                db[e] += value
            _sandwich(A, g, rows[1], g)
            t0 = ((b - lo) * tiles_h + ti) * tiles_w
            _copy_tiles(g, 0, dm, t0, tiles_w)


@njit(**JIT)
def _input_gradient_transform(dv, lo, hi, pad_top, pad_left, tiles_h, rows, dx):
    """dx[b] = the sum over image b's tiles of B dv B^T at their windows (inside the image)."""
    h, w, c = dx.shape[1], dx.shape[2], dx.shape[3]
    d, tiles_w = rows[0], rows.shape[2]
    for b in range(lo, hi):
        dx[b] = 0.0
        for ti in range(tiles_h):
            t0 = ((b - lo) * tiles_h + ti) * tiles_w
            _copy_tiles(dv, t0, d, 0, tiles_w)
            _sandwich(B, d, rows[1], d)
            for k in range(6):
                r = ti * 4 + k - pad_top
                if 0 <= r < h:
                    for tj in range(tiles_w):
                        for q in range(6):
                            col = tj * 4 + q - pad_left
                            if 0 <= col < w:
                                for e in range(c):
                                    dx[b, r, col, e] += d[k * 6 + q, tj, e]


@njit(**JIT)
def _winograd_forward_chunk(x, u, bias, relu, pad_top, pad_left, out_h, out_w, pool_h, pool_w,
                            y, arg, v, rows_c, m, rows_f, lo, hi):
    """Images lo..hi: v = B^T d B of every tile's window d, m[p] = v[p] u[p] (36 products),
    y = A^T m A + bias (then the ReLU) at the tile's pixels inside the output (or pooled)."""
    tiles_h, tiles_w = (out_h + 3) // 4, (out_w + 3) // 4
    tiles = (hi - lo) * tiles_h * tiles_w
    _input_transform(x, lo, hi, pad_top, pad_left, tiles_h, rows_c, v)
    for p in range(36):
        np.dot(v[p, :tiles], u[p], m[p, :tiles])
    _output_transform(m, bias, relu, lo, hi, out_h, out_w, rows_f, pool_h, pool_w, y, arg)


@njit(parallel=True, **JIT)
def _winograd_forward(x, u, bias, relu, pad_top, pad_left, out_h, out_w, pool_h, pool_w, y,
                      arg, v, rows_c, m, rows_f, chunks):
    """Per chunk of images (one per thread), a block at a time: ``_winograd_forward_chunk``.
    y (N, out_h, out_w, F), or with a pool (pool_h > 0) y and arg (N, out_h // pool_h,
    out_w // pool_w, F). v (chunks, 36, tiles, C), m (chunks, 36, tiles, F): each chunk's
    own, for the tiles of one block of its images; rows_c (chunks, 2, 36, tiles_w, C),
    rows_f (..., F): its rows."""
    block = v.shape[2] // (((out_h + 3) // 4) * ((out_w + 3) // 4))
    for chunk in prange(chunks):
        lo, hi = _chunk_rows(chunk, chunks, y.shape[0])
        for b0 in range(lo, hi, block):
            _winograd_forward_chunk(x, u, bias, relu, pad_top, pad_left, out_h, out_w, pool_h,
                                    pool_w, y, arg, v[chunk], rows_c[chunk], m[chunk],
                                    rows_f[chunk], b0, min(hi, b0 + block))


@njit(**JIT)
def _winograd_backward_chunk(x, ut, dy, relu, relu_out, pad_top, pad_left, out_h, out_w,
                             pool_h, pool_w, arg, v, rows_c, dm, rows_f, du, db, dx, need_dx,
                             lo, hi):
    """Images lo..hi: g = dy through the ReLU (db += g; or through the pooling too),
    dm = A g A^T, v = B^T d B again, du[p] = v[p]^T dm[p]; with need_dx, dv[p] = dm[p] ut[p]
    (ut[p] = u[p]^T; into v) and dx = the sum over tiles of B dv B^T at their windows."""
    tiles_h, tiles_w = (out_h + 3) // 4, (out_w + 3) // 4
    tiles = (hi - lo) * tiles_h * tiles_w
    _output_gradient_transform(dy, relu, relu_out, lo, hi, out_h, out_w, rows_f, pool_h, pool_w,
                               arg, dm, db)
    _input_transform(x, lo, hi, pad_top, pad_left, tiles_h, rows_c, v)
    for p in range(36):
        np.dot(v[p, :tiles].T, dm[p, :tiles], du[p])
        if need_dx:
            np.dot(dm[p, :tiles], ut[p], v[p, :tiles])
    if need_dx:
        _input_gradient_transform(v, lo, hi, pad_top, pad_left, tiles_h, rows_c, dx)


@njit(parallel=True, **JIT)
def _winograd_backward(x, ut, dy, relu, relu_out, pad_top, pad_left, out_h, out_w, pool_h,
                       pool_w, arg, v, rows_c, dm, rows_f, du_parts, db_parts, dx, need_dx,
                       chunks):
    """Per chunk (one per thread), a block of images at a time: ``_winograd_backward_chunk``
    into its own du_parts[chunk] (the blocks' du added up; zeros for an empty chunk) and
    db_parts[chunk]. dW = G^T du G comes after the sum over chunks. dy and relu_out: as
    ``_winograd_forward``'s y (pooled with a pool), arg its offsets."""
    block = v.shape[2] // (((out_h + 3) // 4) * ((out_w + 3) // 4))
    for chunk in prange(chunks):
        lo, hi = _chunk_rows(chunk, chunks, dy.shape[0])
        db_parts[chunk] = 0.0
        du_parts[chunk] = 0.0
        du = np.empty_like(du_parts[chunk])
        for b0 in range(lo, hi, block):
            _winograd_backward_chunk(x, ut, dy, relu, relu_out, pad_top, pad_left, out_h,
                                     out_w, pool_h, pool_w, arg, v[chunk], rows_c[chunk],
                                     dm[chunk], rows_f[chunk], du, db_parts[chunk], dx,
                                     need_dx, b0, min(hi, b0 + block))
            du_parts[chunk] += du


@njit(**JIT)
def _winograd_kernel(w, u):
    """u = G w G^T for every (channel, filter): w (9, C, F) -> u (36, C, F) (or, from w
    (9, F, C), the per-point transposes)."""
    _sandwich(G, w, np.empty((18, w.shape[1], w.shape[2]), w.dtype), u)


@njit(**JIT)
def _winograd_kernel_gradient(du, dw):
    """dw = G^T du G for every (channel, filter): du (36, C, F) -> dw (9, C, F)."""
    _sandwich(GT, du, np.empty((18, du.shape[1], du.shape[2]), du.dtype), dw)


def conv2d_forward(x, w, b, stride, padding, relu=False):
    return chunked.conv2d_forward(_Kernels, _chunks(len(x)), x, w, b, stride, padding, relu)


def conv2d_backward(x, w, dy, stride, padding, need_dx=True, relu_output=None):
    return chunked.conv2d_backward(_Kernels, _chunks(len(x)), x, w, dy, stride, padding, need_dx,
                                   relu_output)


# ----------------------------------------------------------------------------- pooling
# Window (i, j) starts at (i*sh - pad_top, j*sw - pad_left) and is clipped to the image:
# the same as padding with -inf (max) or leaving the padding out of the mean (average),
# without a padded copy. The channel loop is innermost: contiguous memory, vectorised.


@njit(**JIT)
def _clip(start, size, limit):
    """The part [lo, hi) of the window [start, start + size) that lies inside [0, limit)."""
    return max(start, 0), min(start + size, limit)


@njit(parallel=True, **JIT)
def _maxpool_forward(x, ph, pw, sh, sw, pad_top, pad_left, y, arg):
    """y = window max, arg = its offset di * pw + dj inside the window (first max wins; a NaN
    beats every number, as in np.argmax)."""
    n, out_h, out_w, c = y.shape
    for b in prange(n):
        for i in range(out_h):
            top = i * sh - pad_top
            r0, r1 = _clip(top, ph, x.shape[1])
            for j in range(out_w):
                left = j * sw - pad_left
                c0, c1 = _clip(left, pw, x.shape[2])
                for ch in range(c):
                    y[b, i, j, ch] = x[b, r0, c0, ch]
                    arg[b, i, j, ch] = (r0 - top) * pw + c0 - left
                for r in range(r0, r1):
                    for q in range(c0, c1):
                        for ch in range(c):
                            v, best = x[b, r, q, ch], y[b, i, j, ch]
                            # | and &: no short-circuit branch, the loop stays a select
                            if (v > best) | ((v != v) & (best == best)):
                                y[b, i, j, ch] = v
                                arg[b, i, j, ch] = (r - top) * pw + q - left


@njit(parallel=True, **JIT)
def _maxpool_backward(dy, arg, ph, pw, sh, sw, pad_top, pad_left, dx):
    """Each output gradient goes to the pixel that won its window.

    Windows that do not overlap (stride >= pool, the usual case): every input pixel lies in
    at most one window, so it reads its gradient once (dy if it won, else 0) -- one write per
    pixel. Overlapping windows: zero dx, then add each gradient onto its winner.
    """
    n, out_h, out_w, c = dy.shape
    h, w = dx.shape[1], dx.shape[2]
    disjoint = sh >= ph and sw >= pw
    for b in prange(n):
        if disjoint:
            for r in range(h):
                i, di = (r + pad_top) // sh, (r + pad_top) % sh
                for q in range(w):
                    j, dj = (q + pad_left) // sw, (q + pad_left) % sw
                    if di < ph and i < out_h and dj < pw and j < out_w:
                        k = di * pw + dj
                        for ch in range(c):
                            dx[b, r, q, ch] = dy[b, i, j, ch] if arg[b, i, j, ch] == k else 0.0
                    else:
                        for ch in range(c):
                            dx[b, r, q, ch] = 0.0
            continue
        dx[b] = 0.0
        for i in range(out_h):
            for j in range(out_w):
                for ch in range(c):
                    k = arg[b, i, j, ch]
                    dx[b, i * sh - pad_top + k // pw, j * sw - pad_left + k % pw, ch] += \
                        dy[b, i, j, ch]


@njit(parallel=True, **JIT)
def _avgpool_forward(x, ph, pw, sh, sw, pad_top, pad_left, y):
    """y = the sum of the window's pixels inside the image / their count."""
    n, out_h, out_w, c = y.shape
    for b in prange(n):
        for i in range(out_h):
            r0, r1 = _clip(i * sh - pad_top, ph, x.shape[1])
            for j in range(out_w):
                c0, c1 = _clip(j * sw - pad_left, pw, x.shape[2])
                y[b, i, j] = 0.0
                for r in range(r0, r1):
                    for q in range(c0, c1):
                        for ch in range(c):
                            y[b, i, j, ch] += x[b, r, q, ch]
                for ch in range(c):
                    y[b, i, j, ch] /= (r1 - r0) * (c1 - c0)


@njit(parallel=True, **JIT)
def _avgpool_backward(dy, ph, pw, sh, sw, pad_top, pad_left, dx):
    """Each window shares its gradient evenly among its pixels inside the image."""
    n, out_h, out_w, c = dy.shape
    for b in prange(n):
        dx[b] = 0.0
        for i in range(out_h):
            r0, r1 = _clip(i * sh - pad_top, ph, dx.shape[1])
            for j in range(out_w):
                c0, c1 = _clip(j * sw - pad_left, pw, dx.shape[2])
                count = (r1 - r0) * (c1 - c0)
                for r in range(r0, r1):
                    for q in range(c0, c1):
                        for ch in range(c):
                            dx[b, r, q, ch] += dy[b, i, j, ch] / count


@njit(parallel=True, **JIT)
def _sum_parts(parts, out):
    """out = parts[0] + parts[1] + ... (per-chunk weight gradients, added in a fixed order)."""
    for i in prange(out.size):
        total = parts[0, i]
        for chunk in range(1, parts.shape[0]):
            total += parts[chunk, i]
        out[i] = total


@njit(parallel=True, **JIT)
def _multiply(a, b, out):
    for i in prange(a.size):
        out[i] = a[i] * b[i]


def maxpool2d_forward(x, pool, stride, padding="valid"):
    return chunked.maxpool2d_forward(_Kernels, x, pool, stride, padding)


def maxpool2d_backward(dy, cache, x_shape, pool, stride, padding="valid"):
    return chunked.maxpool2d_backward(_Kernels, dy, cache, x_shape, pool, stride, padding)


def conv2d_maxpool_forward(x, w, b, stride, padding, pool, relu=True):
    return chunked.conv2d_maxpool_forward(_Kernels, _chunks(len(x)), x, w, b, stride, padding,
                                          pool, relu)


def conv2d_maxpool_backward(x, w, dy, y, cache, stride, padding, pool, need_dx=True, relu=True):
    return chunked.conv2d_maxpool_backward(_Kernels, _chunks(len(x)), x, w, dy, y, cache, stride,
                                           padding, pool, need_dx, relu)


def avgpool2d_forward(x, pool, stride, padding="valid"):
    return chunked.avgpool2d_forward(_Kernels, x, pool, stride, padding)


def avgpool2d_backward(dy, x_shape, pool, stride, padding="valid"):
    return chunked.avgpool2d_backward(_Kernels, dy, x_shape, pool, stride, padding)


def multiply(a, b):
    return chunked.multiply(_Kernels, a, b)


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
    of W's rows: dW[k0:k1] = x[:, k0:k1]^T dy, so no thread's partial dW needs adding up
    (cnn_b's first Dense at batch 32: 70 -> 34 us for dW)."""
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


def dense_forward(x, w, b, relu=False):
    return chunked.dense_forward(_Kernels, _chunks(len(x)), x, w, b, relu)


def dense_backward(x, w, dy, need_dx=True, relu_output=None):
    return chunked.dense_backward(_Kernels, _chunks(len(x)), x, w, dy, need_dx, relu_output)


# ----------------------------------------------------------------------------- activations
# Element-wise kernels see the array flattened (every array here is C-contiguous).


@njit(parallel=True, **JIT)
def _relu(z, a):
    for i in prange(z.size):
        a[i] = z[i] if z[i] > 0 else 0.0


@njit(parallel=True, **JIT)
def _relu_backward(z, a, da, dz):
    for i in prange(a.size):
        dz[i] = da[i] if a[i] > 0 else 0.0


@njit(**JIT)
def _stable_sigmoid(v):
    """1 / (1 + e^-v), computed from e^-|v| so it never overflows."""
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


@njit(parallel=True, **JIT)
def _sigmoid(z, a):
    for i in prange(z.size):
        a[i] = _stable_sigmoid(z[i])


@njit(parallel=True, **JIT)
def _sigmoid_backward(z, a, da, dz):
    for i in prange(a.size):
        dz[i] = da[i] * a[i] * (1.0 - a[i])


@njit(parallel=True, **JIT)
def _tanh(z, a):
    for i in prange(z.size):
        a[i] = math.tanh(z[i])


@njit(parallel=True, **JIT)
def _tanh_backward(z, a, da, dz):
    for i in prange(a.size):
        dz[i] = da[i] * (1.0 - a[i] * a[i])


@njit(parallel=True, **JIT)
def _elu(z, a):
    for i in prange(z.size):
        a[i] = z[i] if z[i] > 0 else math.expm1(z[i])


@njit(parallel=True, **JIT)
def _elu_backward(z, a, da, dz):
    for i in prange(a.size):
        dz[i] = da[i] if z[i] > 0 else da[i] * (a[i] + 1.0)


@njit(parallel=True, **JIT)
def _leaky_relu(z, a):
    for i in prange(z.size):
        a[i] = z[i] if z[i] > 0 else LEAKY_SLOPE * z[i]


@njit(parallel=True, **JIT)
def _leaky_relu_backward(z, a, da, dz):
    for i in prange(a.size):
        dz[i] = da[i] if z[i] > 0 else LEAKY_SLOPE * da[i]


@njit(parallel=True, **JIT)
def _silu(z, a):
    for i in prange(z.size):
        a[i] = z[i] * _stable_sigmoid(z[i])


@njit(parallel=True, **JIT)
def _silu_backward(z, a, da, dz):
    for i in prange(a.size):
        s = _stable_sigmoid(z[i])
        dz[i] = da[i] * s * (1.0 + z[i] * (1.0 - s))


@njit(parallel=True, **JIT)
def _gelu(z, a):
    for i in prange(z.size):
        a[i] = z[i] * 0.5 * (1.0 + math.erf(z[i] * SQRT_HALF))


@njit(parallel=True, **JIT)
def _gelu_backward(z, a, da, dz):
    for i in prange(a.size):
        cdf = 0.5 * (1.0 + math.erf(z[i] * SQRT_HALF))
        dz[i] = da[i] * (cdf + z[i] * INV_SQRT_2PI * math.exp(-0.5 * z[i] * z[i]))


# name -> (forward kernel (z, a), backward kernel (z, a, da, dz)), all on flat arrays.
# Softmax works on rows and linear is the identity: both are handled by name below.
ELEMENTWISE = {
    "relu": (_relu, _relu_backward),
    "sigmoid": (_sigmoid, _sigmoid_backward),
    "tanh": (_tanh, _tanh_backward),
    "elu": (_elu, _elu_backward),
    "leaky_relu": (_leaky_relu, _leaky_relu_backward),
    "silu": (_silu, _silu_backward),
    "gelu": (_gelu, _gelu_backward),
}


@njit(parallel=True, **JIT)
def _softmax_rows(z, a):
    for r in prange(z.shape[0]):
        top = z[r, 0]
        for k in range(1, z.shape[1]):
            top = max(top, z[r, k])
        total = 0.0
        for k in range(z.shape[1]):
            a[r, k] = math.exp(z[r, k] - top)
            total += a[r, k]
        for k in range(z.shape[1]):
            a[r, k] /= total


def activation_forward(name, z):
    if name == "linear":
        return z
    a = np.empty_like(z)
    if name == "softmax":
        _softmax_rows(z.reshape(-1, z.shape[-1]), a.reshape(-1, z.shape[-1]))
        return a
    if name not in ELEMENTWISE:
        return numpy_ref.activation_forward(name, z)  # raises for an unknown name
    ELEMENTWISE[name][0](np.ascontiguousarray(z).reshape(-1), a.reshape(-1))
    return a


def activation_backward(name, z, a, da):
    if name not in ELEMENTWISE:  # softmax's Jacobian product and linear: one-liners there
        return numpy_ref.activation_backward(name, z, a, da)
    dz = np.empty_like(a)
    ELEMENTWISE[name][1](np.ascontiguousarray(z).reshape(-1), a.reshape(-1),
                         np.ascontiguousarray(da).reshape(-1), dz.reshape(-1))
    return dz


# ----------------------------------------------------------------------------- batch norm
# The reference's formulas on (M, C) rows (wrappers in chunked.py): per chunk of rows
# partial sums (in float64, added in a fixed order: deterministic), then element-wise passes.


@njit(parallel=True, **JIT)
def _column_sums(a, b, chunks, parts):
    """parts[chunk, 0] = sum of a's rows, parts[chunk, 1] = sum of (a * b)'s rows (b given)."""
    m, c = a.shape
    for chunk in prange(chunks):
        lo, hi = _chunk_rows(chunk, chunks, m)
        for k in range(c):
            parts[chunk, 0, k] = 0.0
            parts[chunk, 1, k] = 0.0
        for r in range(lo, hi):
            for k in range(c):
                parts[chunk, 0, k] += a[r, k]
                parts[chunk, 1, k] += a[r, k] * b[r, k]


@njit(parallel=True, **JIT)
def _centred_squares(x, mean, chunks, parts):
    """parts[chunk, k] = sum over the chunk's rows of (x - mean)^2."""
    m, c = x.shape
    for chunk in prange(chunks):
        lo, hi = _chunk_rows(chunk, chunks, m)
        for k in range(c):
            parts[chunk, k] = 0.0
        for r in range(lo, hi):
            for k in range(c):
                d = x[r, k] - mean[k]
                parts[chunk, k] += d * d


@njit(parallel=True, **JIT)
def _normalize(x, mean, scale, gamma, beta, x_hat, y):
    """x_hat = (x - mean) * scale; y = gamma x_hat + beta (scale = 1 / sqrt(var + eps))."""
    m, c = x.shape
    for r in prange(m):
        for k in range(c):
            v = (x[r, k] - mean[k]) * scale[k]
            x_hat[r, k] = v
            y[r, k] = v * gamma[k] + beta[k]


@njit(parallel=True, **JIT)
def _batchnorm_dx(x_hat, dy, scale, mean_dy, mean_dy_xhat, dx):
    """dx = scale (dy - mean(dy) - x_hat mean(dy x_hat)) (scale = gamma / sqrt(var + eps))."""
    m, c = dy.shape
    for r in prange(m):
        for k in range(c):
            dx[r, k] = scale[k] * (dy[r, k] - mean_dy[k] - x_hat[r, k] * mean_dy_xhat[k])


def moments(x):
    return chunked.moments(_Kernels, _chunks(len(x)), x)


def batchnorm_forward(x, gamma, beta, mean, var, epsilon):
    return chunked.batchnorm_forward(_Kernels, x, gamma, beta, mean, var, epsilon)


def batchnorm_backward(x_hat, gamma, var, epsilon, dy, batch_stats):
    return chunked.batchnorm_backward(_Kernels, _chunks(len(dy)), x_hat, gamma, var, epsilon,
                                      dy, batch_stats)


# ----------------------------------------------------------------------------- loss


@njit(**JIT)
def _softmax_cross_entropy(z, y, summary, dz):
    """Per row: summary[0, r] = logsumexp(z_r) - <y_r, z_r>, summary[1, r] = 1 if the top
    logit (the first, on ties) is the true class (the accuracy, same pass);
    dz = (softmax(z) - y) / N."""
    n, k = z.shape
    for r in range(n):
        best, best_y = 0, 0
        for j in range(1, k):
            if z[r, j] > z[r, best]:
                best = j
            if y[r, j] > y[r, best_y]:
                best_y = j
        top = z[r, best]
        total = 0.0
        for j in range(k):
            total += math.exp(z[r, j] - top)
        log_total = math.log(total) + top
        loss = 0.0
        for j in range(k):
            loss += y[r, j] * (log_total - z[r, j])
            dz[r, j] = (math.exp(z[r, j] - log_total) - y[r, j]) / n
        summary[0, r] = loss
        summary[1, r] = (z[r, 0] > 0.0) == (y[r, 0] > 0.5) if k == 1 else best == best_y


def softmax_cross_entropy(logits, y):
    return chunked.softmax_cross_entropy(_Kernels, logits, y)


def softmax_cross_entropy_totals(logits, y, totals, halted):
    return chunked.softmax_cross_entropy_totals(_Kernels, logits, y, totals, halted)


# ----------------------------------------------------------------------------- optimizers


@njit(**JIT)
def _flushed(x, tiny):
    """x, or 0 where |x| is below the smallest normal float ``tiny`` (the reference's
    flush_to_zero; x - x keeps x's dtype, and NaN)."""
    return x - x if abs(x) < tiny else x


@njit(parallel=True, **JIT)
def _adam(p, g, m, v, lr_t, rate_m, rate_v, epsilon, tiny):
    """The scalars come in the arrays' dtype, so float32 runs in float32 (as NumPy's)."""
    for i in prange(p.size):
        m[i] = _flushed(m[i] + rate_m * (g[i] - m[i]), tiny)
        v[i] = _flushed(v[i] + rate_v * (g[i] * g[i] - v[i]), tiny)
        p[i] -= lr_t * m[i] / (math.sqrt(v[i]) + epsilon)


@njit(parallel=True, **JIT)
def _sgd_momentum(p, g, velocity, lr, momentum, tiny):
    for i in prange(p.size):
        velocity[i] = _flushed(momentum * velocity[i] - lr * g[i], tiny)
        p[i] += velocity[i]


def adam_update(p, g, m, v, lr_t, beta_1, beta_2, epsilon):
    require_same_shape(param=p, grad=g, m=m, v=v)
    real = p.dtype.type
    _adam(p.reshape(-1), np.ascontiguousarray(g).reshape(-1), m.reshape(-1), v.reshape(-1),
          real(lr_t), real(1 - beta_1), real(1 - beta_2), real(epsilon),
          np.finfo(p.dtype).tiny)


def sgd_update(p, g, velocity, lr, momentum, nesterov=False):
    require_same_shape(param=p, grad=g, velocity=velocity)
    if nesterov:
        numpy_ref.sgd_update(p, g, velocity, lr, momentum, nesterov)
    elif momentum == 0:
        p -= lr * g
    else:
        _sgd_momentum(p.reshape(-1), np.ascontiguousarray(g).reshape(-1), velocity.reshape(-1),
                      lr, momentum, np.finfo(p.dtype).tiny)


class _Kernels:
    """The compiled kernels ``chunked`` drives, under the names it calls them by (the
    Cython extension defines the same names)."""

    conv_forward = staticmethod(_conv_forward)
    conv_backward = staticmethod(_conv_backward)
    plane_conv_forward = staticmethod(_plane_conv_forward)
    plane_conv_backward = staticmethod(_plane_conv_backward)
    winograd_kernel = staticmethod(_winograd_kernel)
    winograd_kernel_gradient = staticmethod(_winograd_kernel_gradient)
    winograd_forward = staticmethod(_winograd_forward)
    winograd_backward = staticmethod(_winograd_backward)
    dense_forward = staticmethod(_dense_forward)
    dense_backward = staticmethod(_dense_backward)
    maxpool_forward = staticmethod(_maxpool_forward)
    maxpool_backward = staticmethod(_maxpool_backward)
    avgpool_forward = staticmethod(_avgpool_forward)
    avgpool_backward = staticmethod(_avgpool_backward)
    multiply = staticmethod(_multiply)
    sum_parts = staticmethod(_sum_parts)
    column_sums = staticmethod(_column_sums)
    centred_squares = staticmethod(_centred_squares)
    normalize = staticmethod(_normalize)
    batchnorm_dx = staticmethod(_batchnorm_dx)
    softmax_cross_entropy = staticmethod(_softmax_cross_entropy)
