"""Cython backend: compiled, OpenMP-parallel kernels (``_cython_kernels.pyx``).

Same algorithm as the reference: im2col, one matrix product, col2im. The loops are
compiled Cython; the matrix products are NumPy's ``@``. We measured both ends of that
choice: calling BLAS from Cython (scipy.linalg.cython_blas) reaches the same OpenBLAS
routine, so it buys nothing per call here (our products are few and large) and would
add SciPy as a dependency, while NumPy's BLAS is already multi-threaded and present.

Built by ``pip install -e .``; when the extension is missing this module raises
ImportError and the registry leaves the backend out.
"""

from __future__ import annotations

import os

# OpenMP threads must sleep between loops, not spin on the cores BLAS needs (see numba_cpu).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from . import _cython_kernels as kernels  # noqa: E402  (ImportError when not built)
from .numpy_ref import empty_like, to_device, to_host, zeros_like  # noqa: E402, F401
from .shapes import conv_geometry, pool_geometry  # noqa: E402

ON_DEVICE = False
COMPILED_FILE = kernels.__file__


def _windows(x, w, stride, padding):
    kh, kw, c, _ = w.shape
    g = conv_geometry(x.shape[1], x.shape[2], kh, kw, stride, padding)
    cols = np.empty((x.shape[0] * g.out_h * g.out_w, kh * kw * c), dtype=x.dtype)
    kernels.im2col(np.ascontiguousarray(x), kh, kw, stride[0], stride[1], g.pad_top, g.pad_left,
                   g.out_h, g.out_w, cols)
    return cols, g


def conv2d_forward(x, w, b, stride, padding):
    cols, g = _windows(x, w, stride, padding)
    y = cols @ w.reshape(-1, w.shape[3])
    kernels.add_bias(y, b)
    return y.reshape(x.shape[0], g.out_h, g.out_w, w.shape[3])


def conv2d_backward(x, w, dy, stride, padding, need_dx=True):
    kh, kw, c, f = w.shape
    cols, g = _windows(x, w, stride, padding)
    dy2 = np.ascontiguousarray(dy).reshape(-1, f)
    dw = (cols.T @ dy2).reshape(w.shape)
    if not need_dx:
        return None, dw, dy2.sum(axis=0)
    dx = np.empty_like(x)
    kernels.col2im(dy2 @ w.reshape(-1, f).T, kh, kw, stride[0], stride[1], g.pad_top, g.pad_left,
                   g.out_h, g.out_w, dx)
    return dx, dw, dy2.sum(axis=0)


def maxpool2d_forward(x, pool, stride):
    n, h, w, c = x.shape
    oh, ow = pool_geometry(h, w, pool, stride)
    y = np.empty((n, oh, ow, c), dtype=x.dtype)
    arg = np.empty((n, oh, ow, c), dtype=np.int64)
    kernels.maxpool_forward(np.ascontiguousarray(x), pool[0], pool[1], stride[0], stride[1], y, arg)
    return y, arg


def maxpool2d_backward(dy, cache, x_shape, pool, stride):
    dx = np.empty(x_shape, dtype=dy.dtype)
    kernels.maxpool_backward(np.ascontiguousarray(dy), cache, pool[1], stride[0], stride[1], dx)
    return dx


def dense_forward(x, w, b):
    y = x @ w
    kernels.add_bias(y, b)
    return y


def activation_forward(name, z):
    if name != "relu":
        from . import numpy_ref

        return numpy_ref.activation_forward(name, z)
    a = np.empty_like(z)
    kernels.relu_forward(np.ascontiguousarray(z).reshape(-1), a.reshape(-1))
    return a


def activation_backward(name, a, da):
    if name != "relu":
        from . import numpy_ref

        return numpy_ref.activation_backward(name, a, da)
    dz = np.empty_like(a)
    kernels.relu_backward(a.reshape(-1), np.ascontiguousarray(da).reshape(-1), dz.reshape(-1))
    return dz


def adam_update(p, g, m, v, lr_t, beta_1, beta_2, epsilon):
    kernels.adam(p.reshape(-1), np.ascontiguousarray(g).reshape(-1), m.reshape(-1),
                 v.reshape(-1), lr_t, beta_1, beta_2, epsilon)
