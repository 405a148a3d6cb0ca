"""Cython backend: compiled, OpenMP-parallel kernels (``_cython_kernels.pyx``).

Same algorithm as the reference: im2col, a matrix product, col2im (and, like numba's,
Winograd F(4x4, 3x3) for 3x3 convolutions whose output is 8x8 or more: winograd.py). The
batch is cut into one chunk of images per thread and each OpenMP thread calls BLAS
itself (scipy.linalg.cython_blas sgemm/dgemm, held to one thread by ``session()``). We
measured the alternative, a multi-threaded NumPy ``@`` between compiled loops: on 2
cores it reached ~100 GFLOP/s on these skinny products against ~165 for two single-
threaded products side by side, and its BLAS threads fought the OpenMP ones for the
cores in between.

Built by ``pip install -e .``; when the extension is missing this module raises
ImportError and the registry leaves the backend out.
"""

from __future__ import annotations

import numpy as np

from . import _cython_kernels as kernels  # ImportError when not built
from . import chunked, numpy_ref
from .numpy_ref import LEAKY_SLOPE
from .shapes import require_same_shape
from .threads import blas_single_thread, chunks_for, cpu_threads

ON_DEVICE = False
COMPILED_FILE = kernels.__file__
THREADS = cpu_threads()


def session():
    """While a model trains or predicts: BLAS on one thread, the parallelism is ours."""
    return blas_single_thread()


def conv2d_forward(x, w, b, stride, padding, relu=False):
    chunks = chunks_for(len(x), THREADS)
    return chunked.conv2d_forward(kernels, chunks, x, w, b, stride, padding, relu)


def conv2d_backward(x, w, dy, stride, padding, need_dx=True, relu_output=None):
    chunks = chunks_for(len(x), THREADS)
    return chunked.conv2d_backward(kernels, chunks, x, w, dy, stride, padding, need_dx,
                                   relu_output)


def dense_forward(x, w, b, relu=False):
    return chunked.dense_forward(kernels, chunks_for(len(x), THREADS), x, w, b, relu)


def dense_backward(x, w, dy, need_dx=True, relu_output=None):
    return chunked.dense_backward(kernels, chunks_for(len(x), THREADS), x, w, dy, need_dx,
                                  relu_output)


def maxpool2d_forward(x, pool, stride, padding="valid"):
    return chunked.maxpool2d_forward(kernels, x, pool, stride, padding)


def maxpool2d_backward(dy, cache, x_shape, pool, stride, padding="valid"):
    return chunked.maxpool2d_backward(kernels, dy, cache, x_shape, pool, stride, padding)


def conv2d_maxpool_forward(x, w, b, stride, padding, pool, relu=True):
    return chunked.conv2d_maxpool_forward(kernels, chunks_for(len(x), THREADS), x, w, b, stride,
                                          padding, pool, relu)


def conv2d_maxpool_backward(x, w, dy, y, cache, stride, padding, pool, need_dx=True, relu=True):
    return chunked.conv2d_maxpool_backward(kernels, chunks_for(len(x), THREADS), x, w, dy, y,
                                           cache, stride, padding, pool, need_dx, relu)


def avgpool2d_forward(x, pool, stride, padding="valid"):
    return chunked.avgpool2d_forward(kernels, x, pool, stride, padding)


def avgpool2d_backward(dy, x_shape, pool, stride, padding="valid"):
    return chunked.avgpool2d_backward(kernels, dy, x_shape, pool, stride, padding)


def multiply(a, b):
    return chunked.multiply(kernels, a, b)


def _flat(a):
    return np.ascontiguousarray(a).reshape(-1)


def activation_forward(name, z):
    if name not in kernels.ELEMENTWISE:  # softmax (rows) and linear: the reference's NumPy
        return numpy_ref.activation_forward(name, z)  # raises for an unknown name
    a = np.empty_like(z)
    kernels.activation_forward(kernels.ELEMENTWISE.index(name), LEAKY_SLOPE, _flat(z),
                               a.reshape(-1))
    return a


def activation_backward(name, z, a, da):
    if name not in kernels.ELEMENTWISE:
        return numpy_ref.activation_backward(name, z, a, da)
    require_same_shape(z=z, a=a, da=da)
    dz = np.empty_like(a)
    kernels.activation_backward(kernels.ELEMENTWISE.index(name), LEAKY_SLOPE, _flat(z), _flat(a),
                                _flat(da), dz.reshape(-1))
    return dz


def moments(x):
    return chunked.moments(kernels, chunks_for(len(x), THREADS), x)


def batchnorm_forward(x, gamma, beta, mean, var, epsilon):
    return chunked.batchnorm_forward(kernels, x, gamma, beta, mean, var, epsilon)


def batchnorm_backward(x_hat, gamma, var, epsilon, dy, batch_stats):
    return chunked.batchnorm_backward(kernels, chunks_for(len(dy), THREADS), x_hat, gamma, var,
                                      epsilon, dy, batch_stats)


def softmax_cross_entropy(logits, y):
    return chunked.softmax_cross_entropy(kernels, logits, y)


def softmax_cross_entropy_totals(logits, y, totals, halted):
    return chunked.softmax_cross_entropy_totals(kernels, logits, y, totals, halted)


def adam_update(p, g, m, v, lr_t, beta_1, beta_2, epsilon):
    require_same_shape(param=p, grad=g, m=m, v=v)
    kernels.adam(p.reshape(-1), np.ascontiguousarray(g).reshape(-1), m.reshape(-1),
                 v.reshape(-1), lr_t, beta_1, beta_2, epsilon)
