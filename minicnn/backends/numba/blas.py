"""Matrix products inside the Numba kernels: ``matmul(a, b, out)`` is np.dot(a, b, out) on
the BLAS that ``backends/blas.py`` picks (NumPy's, called directly through CBLAS, or
SciPy's through Numba's own np.dot), reading transposed views and blocks of columns in place.

With ``NUMBA_DISABLE_JIT=1`` (stepping through the kernels in a debugger) ``matmul`` is
NumPy's own product: an external symbol can be called only from compiled code.

The kernels call two external symbols, ``minicnn_cblas_sgemm`` and ``minicnn_cblas_dgemm``
(CBLAS gemm: row-major, 64-bit sizes). Importing this module binds them to the chosen
library's functions, before any kernel is compiled or loaded from Numba's cache (cached
code names the symbols, not an address, so the cache stays valid whichever is bound).
"""

from __future__ import annotations

import llvmlite.binding
import numba
import numpy as np
from numba import carray, cfunc, njit, types

from ..blas import numpy_cblas_gemm
from .jit import JIT

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


def _signature(real, pointer):
    """CBLAS gemm's: order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc."""
    size = types.int64
    return types.void(types.int32, types.int32, types.int32, size, size, size, real, pointer,
                      size, pointer, size, real, pointer, size)


_sgemm = types.ExternalFunction("minicnn_cblas_sgemm", _signature(types.float32, types.uintp))
_dgemm = types.ExternalFunction("minicnn_cblas_dgemm", _signature(types.float64, types.uintp))


@njit(**JIT)
def _stored(pointer, rows, cols, ld):
    """The (rows, cols) row-major matrix at ``pointer`` whose rows are ld elements apart."""
    return carray(pointer, (rows, ld))[:, :cols]


def scipy_gemm(real):
    """CBLAS gemm (row-major, as the kernels call it) on SciPy's BLAS, for where NumPy's has
    none: C = alpha op(A) op(B) + beta C by Numba's np.dot. A C callback (``.address``)."""
    @cfunc(_signature(real, types.CPointer(real)), cache=JIT["cache"])
    def gemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        op_a = _stored(a, k, m, lda).T if trans_a == TRANS else _stored(a, m, k, lda)
        op_b = _stored(b, n, k, ldb).T if trans_b == TRANS else _stored(b, k, n, ldb)
        out = _stored(c, m, n, ldc)
        product = alpha * np.dot(np.ascontiguousarray(op_a), np.ascontiguousarray(op_b))
        if beta == 0:  # C is not read (it may hold garbage), as in BLAS
            out[:] = product
        else:
            out[:] = product + beta * out

    return gemm


def _bind() -> tuple:
    """Bind the kernels' gemm symbols to NumPy's CBLAS, else to ``scipy_gemm``. -> the
    callbacks made (kept alive with this module)."""
    found = numpy_cblas_gemm()
    callbacks = ()
    if found is None:
        callbacks = (scipy_gemm(types.float32), scipy_gemm(types.float64))
        found = tuple(callback.address for callback in callbacks)
    for name, address in zip(("minicnn_cblas_sgemm", "minicnn_cblas_dgemm"), found):
        llvmlite.binding.add_symbol(name, address)
    return callbacks


_CALLBACKS = _bind()


@njit(**JIT)
def _operand(a):
    """How CBLAS reads the 2-D view a (row-major): (NO_TRANS, row stride) when a's rows are
    contiguous, (TRANS, column stride) when its columns are (a transposed view)."""
    rows, cols = a.shape
    item = a.itemsize
    if a.strides[1] == item or cols == 1:
        ld = a.strides[0] // item if rows > 1 else cols
        if ld >= cols:
            return NO_TRANS, ld
    if a.strides[0] == item or rows == 1:
        ld = a.strides[1] // item if cols > 1 else rows
        if ld >= rows:
            return TRANS, ld
    raise ValueError("matmul: an operand's rows or columns must be contiguous")


@njit(**JIT)
def _cblas_matmul(a, b, out, accumulate=False):
    """out = a b, or out += a b with ``accumulate``: a (m, k) and b (k, n) views whose rows
    or columns are contiguous (a transposed view or a block of columns is read in place),
    out (m, n) with contiguous rows; all of one float dtype."""
    m, k = a.shape
    n = b.shape[1]
    if m == 0 or n == 0:
        return
    if k == 0:  # an empty sum
        if not accumulate:
            out[:] = 0
        return
    trans_a, lda = _operand(a)
    trans_b, ldb = _operand(b)
    if out.strides[1] != out.itemsize and n > 1:
        raise ValueError("matmul: out's rows must be contiguous")
    ldc = out.strides[0] // out.itemsize if m > 1 else n
    beta = 1.0 if accumulate else 0.0
    if out.itemsize == 4:
        _sgemm(ROW_MAJOR, trans_a, trans_b, m, n, k, np.float32(1.0), a.ctypes.data, lda,
               b.ctypes.data, ldb, np.float32(beta), out.ctypes.data, ldc)
    else:
        _dgemm(ROW_MAJOR, trans_a, trans_b, m, n, k, 1.0, a.ctypes.data, lda, b.ctypes.data,
               ldb, beta, out.ctypes.data, ldc)



def _numpy_matmul(a, b, out, accumulate=False):
    """``_cblas_matmul`` in NumPy, for NUMBA_DISABLE_JIT=1 (no compiled code to call it)."""
    if accumulate:
        out += a @ b
    else:
        np.matmul(a, b, out=out)


matmul = _numpy_matmul if numba.config.DISABLE_JIT else _cblas_matmul
