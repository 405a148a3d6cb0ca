"""Max and average pooling, parallel over images (the reference pool.py, one pass per
window, with no padded copy)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .jit import JIT

# ----------------------------------------------------------------------------- pooling
# Window (i, j) starts at (i*sh - pad_top, j*sw - pad_left) and is clipped to the image:
# the same as padding with -inf (max) or leaving the padding out of the mean (average),
# without a padded copy. The channel loop is innermost: contiguous memory, vectorised.


@njit(**JIT)
def _clip(start, size, limit):
    """The part [lo, hi) of the window [start, start + size) that lies inside [0, limit)."""
    return max(start, 0), min(start + size, limit)


@njit(parallel=True, **JIT)
def maxpool_forward(x, ph, pw, sh, sw, pad_top, pad_left, y, arg):
    """y = window max, arg = its offset di * pw + dj inside the window (first max wins; a NaN
    beats every number, as in np.argmax). Each window's running maxima and their offsets
    live in per-image buffers, the offsets as int32 (as wide as a float32), and every update
    is a select, not a branch: the channel loops vectorise (as the Cython kernel's)."""
    n, out_h, out_w, c = y.shape
    for b in prange(n):
        best, where = np.empty(c, x.dtype), np.empty(c, np.int32)
        for i in range(out_h):
            top = i * sh - pad_top
            r0, r1 = _clip(top, ph, x.shape[1])
            for j in range(out_w):
                left = j * sw - pad_left
                c0, c1 = _clip(left, pw, x.shape[2])
                k = (r0 - top) * pw + c0 - left
                for ch in range(c):
                    best[ch], where[ch] = x[b, r0, c0, ch], k
                for r in range(r0, r1):
                    for q in range(c0, c1):
                        k = (r - top) * pw + q - left
                        for ch in range(c):
                            v, current = x[b, r, q, ch], best[ch]
                            # | and &: no short-circuit branch, the loop stays a select
                            better = (v > current) | ((v != v) & (current == current))
                            best[ch] = v if better else current
                            where[ch] = k if better else where[ch]
                for ch in range(c):
                    y[b, i, j, ch], arg[b, i, j, ch] = best[ch], where[ch]


@njit(parallel=True, **JIT)
def maxpool_backward(dy, arg, ph, pw, sh, sw, pad_top, pad_left, dx):
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
def avgpool_forward(x, ph, pw, sh, sw, pad_top, pad_left, y):
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
def avgpool_backward(dy, ph, pw, sh, sw, pad_top, pad_left, dx):
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


