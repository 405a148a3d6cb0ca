"""Numba CPU backend: the reference's algorithms as parallel JIT loops.

The batch is cut into one chunk of images per thread and each thread runs the whole
pipeline on its chunk, calling single-threaded BLAS (``blas.matmul``) inside the JIT, so one
thread pool does all the work (``compiled.py`` drives the kernels, for Cython too). Arrays
are channels-last and C-contiguous: the innermost loops run over channels. Kernels compile
once per dtype and are cached on disk (``jit.py``). Read them by operation: ``conv``
(im2col), ``plane`` (one input channel), ``winograd``, ``pool``, ``dense``,
``elementwise``, ``merge``, ``normalization``, ``losses``, ``optimizers``.
"""

from __future__ import annotations

import numba

from ..compiled import CompiledCPUBackend
from . import (
    chunks,
    conv,
    dense,
    elementwise,
    losses,
    merge,
    normalization,
    optimizers,
    plane,
    pool,
    winograd,
)
from .jit import COMPILE_NOTICE


class NumbaKernels:
    """The compiled kernels, under the names the shared driver calls them by
    (``contract.COMPILED_KERNELS``; the Cython extension defines the same)."""

    conv_forward = staticmethod(conv.conv_forward)
    conv_backward = staticmethod(conv.conv_backward)
    plane_conv_forward = staticmethod(plane.plane_conv_forward)
    plane_conv_backward = staticmethod(plane.plane_conv_backward)
    winograd_kernel = staticmethod(winograd.winograd_kernel)
    winograd_kernel_gradient = staticmethod(winograd.winograd_kernel_gradient)
    winograd_forward = staticmethod(winograd.winograd_forward)
    winograd_backward = staticmethod(winograd.winograd_backward)
    dense_forward = staticmethod(dense.dense_forward)
    dense_backward = staticmethod(dense.dense_backward)
    maxpool_forward = staticmethod(pool.maxpool_forward)
    maxpool_backward = staticmethod(pool.maxpool_backward)
    avgpool_forward = staticmethod(pool.avgpool_forward)
    avgpool_backward = staticmethod(pool.avgpool_backward)
    sum_parts = staticmethod(chunks.sum_parts)
    column_sums = staticmethod(normalization.column_sums)
    centred_squares = staticmethod(normalization.centred_squares)
    normalize = staticmethod(normalization.normalize)
    batchnorm_dx = staticmethod(normalization.batchnorm_dx)
    softmax_cross_entropy = staticmethod(losses.softmax_cross_entropy)
    ELEMENTWISE = elementwise.ELEMENTWISE
    activation_forward = staticmethod(elementwise.activation_forward)
    activation_backward = staticmethod(elementwise.activation_backward)
    softmax_rows = staticmethod(elementwise.softmax_rows)
    add = staticmethod(merge.add)
    join_or_split = staticmethod(merge.join_or_split)
    multiply = staticmethod(elementwise.multiply)
    dropout = staticmethod(elementwise.dropout)
    adam = staticmethod(optimizers.adam)
    sgd = staticmethod(optimizers.sgd)


class NumbaBackend(CompiledCPUBackend):
    """Numba's parallel JIT kernels for every product, pool, norm, loss and update; the rest
    (memory, the other losses, metrics) is the reference's."""

    name = "numba"
    compile_notice = COMPILE_NOTICE
    kernels = NumbaKernels

    def _threads(self) -> int:
        return numba.get_num_threads()
