"""Max and average pooling over (ph, pw) windows with a stride.

    max:      y[n, i, j, c] = max of x's window at (i*sh, j*sw);  dx: dy goes to the winner
    average:  y[n, i, j, c] = mean of the window;                 dx: dy / size to each pixel

x (N, H, W, C) -> y (N, OH, OW, C). 'same' padding pads max-pooling with -inf (padding
never wins) and leaves padding out of an average (TensorFlow's rules).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..shapes import conv_geometry
from .conv import col2im, crop_padding, pad_images


def pool_windows(xp, pool, stride, out_h: int, out_w: int):
    """Padded images (N, Hp, Wp, C) -> every pooling window, (N, OH, OW, C, ph * pw)."""
    n, c = xp.shape[0], xp.shape[3]
    windows = sliding_window_view(xp, pool, axis=(1, 2))[
        :, : out_h * stride[0] : stride[0], : out_w * stride[1] : stride[1]
    ]  # (N, OH, OW, C, ph, pw)
    return windows.reshape(n, out_h, out_w, c, pool[0] * pool[1])


def maxpool2d_forward(x, pool, stride, padding="valid"):
    """y = the max of each window; cache = where in its window (0 .. ph*pw - 1) it was."""
    g = conv_geometry(x.shape[1], x.shape[2], *pool, stride, padding)
    flat = pool_windows(pad_images(x, g, -np.inf), pool, stride, g.out_h, g.out_w)
    arg = flat.argmax(axis=-1)
    y = np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]
    return y, arg


def maxpool2d_backward(dy, cache, x_shape, pool, stride, padding="valid"):
    """Route each output gradient to the input pixel that won its window (summed on overlap)."""
    g = conv_geometry(x_shape[1], x_shape[2], *pool, stride, padding)
    n, c = x_shape[0], x_shape[3]
    h, w = x_shape[1] + g.pad_top + g.pad_bottom, x_shape[2] + g.pad_left + g.pad_right
    _, oh, ow, _ = dy.shape
    di, dj = np.divmod(cache, pool[1])  # winner's offset inside its window
    rows = np.arange(oh)[None, :, None, None] * stride[0] + di
    cols = np.arange(ow)[None, None, :, None] * stride[1] + dj
    flat = ((np.arange(n)[:, None, None, None] * h + rows) * w + cols) * c + np.arange(c)
    dxp = np.zeros(n * h * w * c, dtype=dy.dtype)
    np.add.at(dxp, flat.ravel(), dy.ravel())
    return crop_padding(dxp.reshape(n, h, w, c), x_shape, g)


def _window_sizes(x_shape, pool, stride, g):
    """How many real (not padding) pixels each pooling window covers, (OH, OW, 1)."""
    ones = pad_images(np.ones((1, x_shape[1], x_shape[2], 1)), g)
    return pool_windows(ones, pool, stride, g.out_h, g.out_w).sum(axis=-1)[0]


def avgpool2d_forward(x, pool, stride, padding="valid"):
    """y[n, i, j, c] = mean of the window at (i*sh, j*sw) over its pixels inside the image."""
    g = conv_geometry(x.shape[1], x.shape[2], *pool, stride, padding)
    sums = pool_windows(pad_images(x, g), pool, stride, g.out_h, g.out_w).sum(axis=-1)
    return (sums / _window_sizes(x.shape, pool, stride, g)).astype(x.dtype, copy=False)


def avgpool2d_backward(dy, x_shape, pool, stride, padding="valid"):
    """Each window spreads dy / (its size) evenly over its pixels: col2im of a constant."""
    g = conv_geometry(x_shape[1], x_shape[2], *pool, stride, padding)
    share = (dy / _window_sizes(x_shape, pool, stride, g)).astype(dy.dtype, copy=False)
    n, c = x_shape[0], x_shape[3]
    cols = np.broadcast_to(share[:, :, :, None, None, :], (n, g.out_h, g.out_w, *pool, c))
    padded = (n, x_shape[1] + g.pad_top + g.pad_bottom, x_shape[2] + g.pad_left + g.pad_right, c)
    dxp = col2im(cols.reshape(-1, pool[0] * pool[1] * c), padded, *pool, stride, g.out_h,
                 g.out_w)
    return crop_padding(dxp, x_shape, g)
