"""The textbook's loops: convolution and pooling one multiply-add at a time.

Nothing here is fast, and nothing runs in a model: these loops are the definition that the
vectorised reference (conv.py, pool.py) is tested against (tests/backends/test_naive_oracle.py), and
the place to start reading if im2col feels like magic. Shapes as in conv.py and pool.py;
padding as ``shapes.conv_geometry`` computes it.
"""

from __future__ import annotations

import numpy as np

from ..shapes import conv_geometry


def _padded(x, g, value=0.0):
    n, h, w, c = x.shape
    xp = np.full((n, h + g.pad_top + g.pad_bottom, w + g.pad_left + g.pad_right, c), value,
                 dtype=x.dtype)
    xp[:, g.pad_top : g.pad_top + h, g.pad_left : g.pad_left + w] = x
    return xp


def conv2d_forward_loops(x, w, b, stride, padding):
    """y[n, i, j, f] = b[f] + sum_{di, dj, c} xpad[n, i*sh + di, j*sw + dj, c] w[di, dj, c, f]."""
    n, _, _, c_in = x.shape
    kh, kw, _, filters = w.shape
    g = conv_geometry(x.shape[1], x.shape[2], kh, kw, stride, padding)
    xp = _padded(x, g)
    y = np.zeros((n, g.out_h, g.out_w, filters), dtype=x.dtype)
    for b_ in range(n):
        for i in range(g.out_h):
            for j in range(g.out_w):
                for f in range(filters):
                    total = 0.0 if b is None else b[f]
                    for di in range(kh):
                        for dj in range(kw):
                            for c in range(c_in):
                                total += (xp[b_, i * stride[0] + di, j * stride[1] + dj, c]
                                          * w[di, dj, c, f])
                    y[b_, i, j, f] = total
    return y


def conv2d_backward_loops(x, w, dy, stride, padding):
    """Every multiply-add of the forward sends dy back to both of its factors:
    dx[window pixel] += dy w,  dw[tap] += dy x,  db[f] += dy."""
    n, h, wd, c_in = x.shape
    kh, kw, _, filters = w.shape
    g = conv_geometry(h, wd, kh, kw, stride, padding)
    xp = _padded(x, g)
    dxp, dw, db = np.zeros_like(xp), np.zeros_like(w), np.zeros(filters, dtype=dy.dtype)
    for b_ in range(n):
        for i in range(g.out_h):
            for j in range(g.out_w):
                for f in range(filters):
                    d = dy[b_, i, j, f]
                    db[f] += d
                    for di in range(kh):
                        for dj in range(kw):
                            for c in range(c_in):
                                r, s = i * stride[0] + di, j * stride[1] + dj
                                dxp[b_, r, s, c] += d * w[di, dj, c, f]
                                dw[di, dj, c, f] += d * xp[b_, r, s, c]
    return dxp[:, g.pad_top : g.pad_top + h, g.pad_left : g.pad_left + wd], dw, db


def maxpool2d_forward_loops(x, pool, stride, padding="valid"):
    """y[n, i, j, c] = the max of the window at (i*sh, j*sw); padding (-inf) never wins."""
    n, _, _, channels = x.shape
    g = conv_geometry(x.shape[1], x.shape[2], *pool, stride, padding)
    xp = _padded(x, g, -np.inf)
    y = np.empty((n, g.out_h, g.out_w, channels), dtype=x.dtype)
    for b_ in range(n):
        for i in range(g.out_h):
            for j in range(g.out_w):
                for c in range(channels):
                    window = xp[b_, i * stride[0] : i * stride[0] + pool[0],
                                j * stride[1] : j * stride[1] + pool[1], c]
                    y[b_, i, j, c] = window.max()
    return y


def maxpool2d_backward_loops(x, dy, pool, stride, padding="valid"):
    """Each window's gradient goes to its winner (the first maximum, reading row by row)."""
    n, h, w, channels = x.shape
    g = conv_geometry(h, w, *pool, stride, padding)
    xp = _padded(x, g, -np.inf)
    dxp = np.zeros(xp.shape, dtype=dy.dtype)
    for b_ in range(n):
        for i in range(g.out_h):
            for j in range(g.out_w):
                for c in range(channels):
                    r0, s0 = i * stride[0], j * stride[1]
                    window = xp[b_, r0 : r0 + pool[0], s0 : s0 + pool[1], c]
                    di, dj = np.unravel_index(np.argmax(window), window.shape)
                    dxp[b_, r0 + di, s0 + dj, c] += dy[b_, i, j, c]
    return dxp[:, g.pad_top : g.pad_top + h, g.pad_left : g.pad_left + w]


def avgpool2d_forward_loops(x, pool, stride, padding="valid"):
    """y[n, i, j, c] = the mean of the window's pixels that lie inside the image."""
    n, h, w, channels = x.shape
    g = conv_geometry(h, w, *pool, stride, padding)
    y = np.empty((n, g.out_h, g.out_w, channels), dtype=x.dtype)
    for b_ in range(n):
        for i in range(g.out_h):
            for j in range(g.out_w):
                r0, s0 = i * stride[0] - g.pad_top, j * stride[1] - g.pad_left
                rows = slice(max(r0, 0), min(r0 + pool[0], h))
                cols = slice(max(s0, 0), min(s0 + pool[1], w))
                for c in range(channels):
                    y[b_, i, j, c] = x[b_, rows, cols, c].mean()
    return y
