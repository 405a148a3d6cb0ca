# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""Cython kernels: the reference's algorithms compiled, typed for float32 and float64 (the
fused type ``real``) and parallel with OpenMP (prange). Convolutions and dense layers cut
the batch into one chunk per thread; each thread builds its rows of the window matrix and
multiplies them by calling BLAS directly (single-threaded: NumPy's or SciPy's, ``gemm``), so
one OpenMP pool does all the work. The kernels are the Numba backend's, under the same
names and arguments (``contract.COMPILED_KERNELS``), one include file per operation.
"""

import numpy as np

from minicnn.backends.reference.activations import LEAKY_SLOPE
from minicnn.backends.reference import elementwise as _ref_elementwise

from cython.parallel cimport prange
from libc.float cimport DBL_MIN, FLT_MIN
from libc.math cimport INFINITY, erf, exp, expm1, log, sqrt, sqrtf, tanh
from libc.stdlib cimport free, malloc
from libc.string cimport memset
from scipy.linalg.cython_blas cimport dgemm, sgemm

ctypedef fused real:
    float
    double

# A convolution as the driver hands it over (compiled.KernelGeometry): kh, kw, sh, sw,
# pad_top, pad_left, out_h, out_w; a max-pooling after it (pool_h, pool_w), (0, 0) for none.
ctypedef (int, int, int, int, int, int, int, int) geometry_t
ctypedef (int, int) pool_t

ctypedef fused offset:  # max-pooling's window offsets (compiled._offset_dtype)
    signed char
    long long


# CBLAS gemm with 64-bit sizes (row-major order, trans_a, trans_b, m, n, k, alpha, a, lda, b,
# ldb, beta, c, ldc): NumPy's BLAS where backends/blas.py found it (``use_cblas``), else NULL
# and the products go to SciPy's.
ctypedef void (*sgemm64)(int, int, int, long long, long long, long long, float, const float*,
                         long long, const float*, long long, float, float*,
                         long long) noexcept nogil
ctypedef void (*dgemm64)(int, int, int, long long, long long, long long, double,
                         const double*, long long, const double*, long long, double, double*,
                         long long) noexcept nogil
cdef sgemm64 cblas_sgemm = NULL
cdef dgemm64 cblas_dgemm = NULL
cdef enum:
    ROW_MAJOR = 101
    NO_TRANS = 111
    TRANS = 112


def use_cblas(size_t sgemm_address, size_t dgemm_address):
    """Multiply with the CBLAS gemm functions at these addresses (64-bit sizes), or with
    SciPy's BLAS where they are 0."""
    global cblas_sgemm, cblas_dgemm
    cblas_sgemm = <sgemm64>sgemm_address
    cblas_dgemm = <dgemm64>dgemm_address


cdef void gemm(real* a, real* b, real* c, int m, int n, int k, bint trans_a,
               bint trans_b, bint accumulate=False, int a_stride=0,
               int c_stride=0) noexcept nogil:
    """Row-major C (m, n) = op(A) (m, k) @ op(B) (k, n), op = transpose where asked (with
    accumulate: C += op(A) op(B)); A's and C's rows are a_stride and c_stride apart when
    given (a block of columns of a wider matrix), else packed.

    SciPy's BLAS is column-major, where a row-major C is C^T: so it computes
    C^T = op(B)^T op(A)^T.
    """
    cdef int ldb = k if trans_b else n
    cdef int lda = a_stride if a_stride else (m if trans_a else k)
    cdef int ldc = c_stride if c_stride else n
    cdef real one = 1
    cdef real beta = 1 if accumulate else 0
    cdef int op_a = TRANS if trans_a else NO_TRANS
    cdef int op_b = TRANS if trans_b else NO_TRANS
    cdef char ta = b'T' if trans_b else b'N'
    cdef char tb = b'T' if trans_a else b'N'
    if real is float:
        if cblas_sgemm != NULL:
            cblas_sgemm(ROW_MAJOR, op_a, op_b, m, n, k, one, a, lda, b, ldb, beta, c, ldc)
        else:
            sgemm(&ta, &tb, &n, &m, &k, &one, b, &ldb, a, &lda, &beta, c, &ldc)
    else:
        if cblas_dgemm != NULL:
            cblas_dgemm(ROW_MAJOR, op_a, op_b, m, n, k, one, a, lda, b, ldb, beta, c, ldc)
        else:
            dgemm(&ta, &tb, &n, &m, &k, &one, b, &ldb, a, &lda, &beta, c, &ldc)



include "conv.pxi"
include "plane.pxi"
include "winograd.pxi"
include "pool.pxi"
include "dense.pxi"
include "elementwise.pxi"
include "merge.pxi"
include "normalization.pxi"
include "losses.pxi"
