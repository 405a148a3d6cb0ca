"""The NumPy reference backend: every kernel, vectorised and written to be read.

Shapes (channels-last, like Keras):
    x (N, H, W, C)   conv kernel w (kh, kw, C, F)   bias b (F,)   y (N, OH, OW, F)
    dense x (N, D)   dense kernel w (D, U)

Convolution is im2col: every kh x kw x C window becomes one row of a matrix, so the
convolution is one matrix product. The backward pass is the same product transposed,
and col2im adds the window gradients back onto the image.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .shapes import conv_geometry, pool_geometry

ON_DEVICE = False


def to_device(a: np.ndarray) -> np.ndarray:
    """Arrays of the CPU backends live in host memory: nothing to move."""
    return a


def to_host(a) -> np.ndarray:
    return np.asarray(a)


def zeros_like(a: np.ndarray) -> np.ndarray:
    return np.zeros_like(a)


# ----------------------------------------------------------------------------- conv


def pad_images(x: np.ndarray, geometry) -> np.ndarray:
    """Zero-pad the two spatial axes of (N, H, W, C) images."""
    g = geometry
    if g.pad_top == g.pad_bottom == g.pad_left == g.pad_right == 0:
        return x
    return np.pad(x, ((0, 0), (g.pad_top, g.pad_bottom), (g.pad_left, g.pad_right), (0, 0)))


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
    """y[n, i, j, f] = b[f] + sum_{di, dj, c} xpad[n, i*sh + di, j*sw + dj, c] * w[di, dj, c, f]."""
    kh, kw, c, f = w.shape
    g = conv_geometry(x.shape[1], x.shape[2], kh, kw, stride, padding)
    cols = im2col(pad_images(x, g), kh, kw, stride, g.out_h, g.out_w)
    y = cols @ w.reshape(kh * kw * c, f) + b
    return y.reshape(x.shape[0], g.out_h, g.out_w, f)


def conv2d_backward(x, w, dy, stride, padding, need_dx=True):
    """Gradients of conv2d_forward: dx = col2im(dy W^T), dw = cols^T dy, db = sum of dy.

    ``need_dx=False`` (the model's first layer) skips dx and returns None for it.
    """
    kh, kw, c, f = w.shape
    g = conv_geometry(x.shape[1], x.shape[2], kh, kw, stride, padding)
    xp = pad_images(x, g)
    cols = im2col(xp, kh, kw, stride, g.out_h, g.out_w)
    dy2 = dy.reshape(-1, f)
    dw = (cols.T @ dy2).reshape(w.shape)
    db = dy2.sum(axis=0)
    if not need_dx:
        return None, dw, db
    dxp = col2im(dy2 @ w.reshape(-1, f).T, xp.shape, kh, kw, stride, g.out_h, g.out_w)
    dx = dxp[:, g.pad_top : g.pad_top + x.shape[1], g.pad_left : g.pad_left + x.shape[2], :]
    return np.ascontiguousarray(dx), dw, db


# ----------------------------------------------------------------------------- pooling


def maxpool2d_forward(x, pool, stride):
    """y[n, i, j, c] = max of the pool window at (i*sh, j*sw); cache = argmax inside the window."""
    n, h, w, c = x.shape
    oh, ow = pool_geometry(h, w, pool, stride)
    windows = sliding_window_view(x, pool, axis=(1, 2))[
        :, : oh * stride[0] : stride[0], : ow * stride[1] : stride[1]
    ]  # (N, OH, OW, C, ph, pw)
    flat = windows.reshape(n, oh, ow, c, pool[0] * pool[1])
    arg = flat.argmax(axis=-1)
    y = np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]
    return y, arg


def maxpool2d_backward(dy, cache, x_shape, pool, stride):
    """Route each output gradient to the input pixel that won its window (summed on overlap)."""
    n, h, w, c = x_shape
    _, oh, ow, _ = dy.shape
    di, dj = np.divmod(cache, pool[1])  # winner's offset inside its window
    rows = np.arange(oh)[None, :, None, None] * stride[0] + di
    cols = np.arange(ow)[None, None, :, None] * stride[1] + dj
    flat = ((np.arange(n)[:, None, None, None] * h + rows) * w + cols) * c + np.arange(c)
    dx = np.zeros(n * h * w * c, dtype=dy.dtype)
    np.add.at(dx, flat.ravel(), dy.ravel())
    return dx.reshape(x_shape)


# ----------------------------------------------------------------------------- dense


def dense_forward(x, w, b):
    """y = x W + b, x (N, D), W (D, U)."""
    return x @ w + b


def dense_backward(x, w, dy):
    """dx = dy W^T, dW = x^T dy, db = sum over the batch of dy."""
    return dy @ w.T, x.T @ dy, dy.sum(axis=0)


# ----------------------------------------------------------------------------- activations


def _stable_sigmoid(z):
    """1 / (1 + e^-z), computed from e^-|z| so it never overflows."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def activation_forward(name: str, z):
    """a = f(z) for f in relu, sigmoid, softmax (over the last axis), linear."""
    if name == "relu":
        return np.maximum(z, 0)
    if name == "sigmoid":
        return _stable_sigmoid(z)
    if name == "softmax":
        return _softmax(z)
    return z


def activation_backward(name: str, a, da):
    """dz from the activation's *output* a: relu 1[a>0], sigmoid a(1-a), softmax a(da - <da, a>)."""
    if name == "relu":
        return da * (a > 0)
    if name == "sigmoid":
        return da * a * (1 - a)
    if name == "softmax":
        return a * (da - (da * a).sum(axis=-1, keepdims=True))
    return da


# ----------------------------------------------------------------------------- losses
# Every loss is a mean over the batch and returns (loss as float, gradient w.r.t. its input).


def softmax_cross_entropy(logits, y):
    """loss = mean_n [logsumexp(z_n) - <y_n, z_n>]; dz = (softmax(z) - y) / N. y is one-hot."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    log_probs = shifted - log_sum
    n = logits.shape[0]
    loss = -(y * log_probs).sum() / n
    return float(loss), (np.exp(log_probs) - y) / n


def sigmoid_binary_cross_entropy(logits, y):
    """loss = mean of log(1 + e^z) - y z (the stable form); dz = (sigmoid(z) - y) / size."""
    loss = np.maximum(logits, 0) - logits * y + np.log1p(np.exp(-np.abs(logits)))
    return float(loss.mean()), (_stable_sigmoid(logits) - y) / logits.size


def probability_cross_entropy(probs, y, eps: float = 1e-7):
    """Cross-entropy of already-normalised probabilities (Keras' from_logits=False), clipped."""
    p = np.clip(probs, eps, 1 - eps)
    n = probs.shape[0]
    grad = np.where((probs > eps) & (probs < 1 - eps), -y / p, 0) / n
    return float(-(y * np.log(p)).sum() / n), grad.astype(probs.dtype)


def probability_binary_cross_entropy(probs, y, eps: float = 1e-7):
    """Binary cross-entropy of probabilities in (0, 1), clipped like Keras."""
    p = np.clip(probs, eps, 1 - eps)
    loss = -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()
    inside = (probs > eps) & (probs < 1 - eps)
    grad = np.where(inside, (p - y) / (p * (1 - p)), 0) / probs.size
    return float(loss), grad.astype(probs.dtype)


def mean_squared_error(pred, y):
    """loss = mean (pred - y)^2 over all entries; d pred = 2 (pred - y) / size."""
    diff = pred - y
    return float((diff * diff).mean()), 2 * diff / diff.size


def count_correct(pred, y, threshold: float = 0.5) -> int:
    """Rows whose argmax of pred matches one-hot y; one column: (pred > threshold) == y."""
    if pred.shape[1] == 1:
        return int(((pred[:, 0] > threshold) == (y[:, 0] > 0.5)).sum())
    return int((pred.argmax(axis=1) == y.argmax(axis=1)).sum())


# ----------------------------------------------------------------------------- optimizers
# Updates are in place: parameters and optimizer state keep their memory.


def sgd_update(p, g, velocity, lr: float, momentum: float) -> None:
    """v <- momentum v - lr g;  p <- p + v   (Keras' SGD; v is unused when momentum = 0)."""
    if momentum == 0:
        p -= lr * g
        return
    velocity *= momentum
    velocity -= lr * g
    p += velocity


def adam_update(p, g, m, v, lr_t: float, beta_1: float, beta_2: float, epsilon: float) -> None:
    """m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;  p <- p - lr_t m / (sqrt(v) + eps)."""
    m += (1 - beta_1) * (g - m)
    v += (1 - beta_2) * (g * g - v)
    p -= lr_t * m / (np.sqrt(v) + epsilon)
