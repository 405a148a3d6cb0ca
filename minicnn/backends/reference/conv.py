"""2-D convolution as im2col: every window becomes a row, the convolution one product.

    y[n, i, j, f] = b[f] + sum_{di, dj, c} xpad[n, i*sh + di, j*sw + dj, c] w[di, dj, c, f]

x (N, H, W, C), w (kh, kw, C, F), b (F,), y (N, OH, OW, F). ``im2col`` turns the padded
images into a matrix with one row per output pixel and one column per (di, dj, c), so the
forward pass is ``dense_forward(cols, w as (kh*kw*C, F))``. The backward pass is the same
product transposed: dW = cols^T dy, and dcols = dy W^T, which ``col2im`` adds back onto
the pixels each window came from. ``naive.py`` has the same convolution as seven loops.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..shapes import conv_geometry
from .dense import dense_forward


def pad_images(x: np.ndarray, geometry, value: float = 0.0) -> np.ndarray:
    """Pad the two spatial axes of (N, H, W, C) images with ``value`` (zeros by default)."""
    g = geometry
    if g.pad_top == g.pad_bottom == g.pad_left == g.pad_right == 0:
        return x
    return np.pad(x, ((0, 0), (g.pad_top, g.pad_bottom), (g.pad_left, g.pad_right), (0, 0)),
                  constant_values=value)


def crop_padding(xp, x_shape, g):
    """The inverse of pad_images: the (N, H, W, C) interior of padded images."""
    return np.ascontiguousarray(
        xp[:, g.pad_top : g.pad_top + x_shape[1], g.pad_left : g.pad_left + x_shape[2], :])


def im2col(xp: np.ndarray, kh: int, kw: int, stride, out_h: int, out_w: int) -> np.ndarray:
    """Padded images (N, Hp, Wp, C) -> windows (N*OH*OW, kh*kw*C), rows in (kh, kw, C) order."""
    n, c = xp.shape[0], xp.shape[3]
    windows = sliding_window_view(xp, (kh, kw), axis=(1, 2))  # (N, Hp-kh+1, Wp-kw+1, C, kh, kw)
    windows = windows[:, : out_h * stride[0] : stride[0], : out_w * stride[1] : stride[1]]
    return windows.transpose(0, 1, 2, 4, 5, 3).reshape(n * out_h * out_w, kh * kw * c)


def col2im(cols: np.ndarray, padded_shape, kh: int, kw: int, stride, out_h: int, out_w: int):
    """Inverse of im2col for gradients: add each window's rows back where they came from.

    The loop runs over the kh*kw kernel offsets only; each step is one strided slice-add.
    """
    n, _, _, c = padded_shape
    cols = cols.reshape(n, out_h, out_w, kh, kw, c)
    dxp = np.zeros(padded_shape, dtype=cols.dtype)
    sh, sw = stride
    for i in range(kh):
        for j in range(kw):
            dxp[:, i : i + sh * out_h : sh, j : j + sw * out_w : sw, :] += cols[:, :, :, i, j, :]
    return dxp


def conv2d_forward(x, w, b, stride, padding):
    """y = im2col(x) W + b as (N, OH, OW, F) (b None: no bias)."""
    kh, kw, c, f = w.shape
    g = conv_geometry(x.shape[1], x.shape[2], kh, kw, stride, padding)
    cols = im2col(pad_images(x, g), kh, kw, stride, g.out_h, g.out_w)
    y = dense_forward(cols, w.reshape(kh * kw * c, f), b)
    return y.reshape(x.shape[0], g.out_h, g.out_w, f)


def conv2d_backward(x, w, dy, stride, padding):
    """dx = col2im(dy W^T), dW = cols^T dy, db = sum of dy."""
    kh, kw, c, f = w.shape
    g = conv_geometry(x.shape[1], x.shape[2], kh, kw, stride, padding)
    xp = pad_images(x, g)
    cols = im2col(xp, kh, kw, stride, g.out_h, g.out_w)
    dy2 = dy.reshape(-1, f)
    dw = (cols.T @ dy2).reshape(w.shape)
    db = dy2.sum(axis=0)
    dxp = col2im(dy2 @ w.reshape(-1, f).T, xp.shape, kh, kw, stride, g.out_h, g.out_w)
    return crop_padding(dxp, x.shape, g), dw, db
