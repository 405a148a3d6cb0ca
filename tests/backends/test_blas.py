"""The compiled kernels' matrix products on either BLAS library (backends/blas.py): NumPy's
CBLAS called directly, or SciPy's."""

import ctypes
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import types

import minicnn
from minicnn.backends import blas
from minicnn.backends.numba import blas as numba_blas
from tests.helpers import CONV_CASES, ROOT, compare

DTYPES = {np.float32: types.float32, np.float64: types.float64}


def _operand(rng, rows, cols, dtype, transposed, offset):
    """A (rows, cols) view: a transposed view of a (cols, rows) matrix, or a block of columns
    of a wider one (starting at column ``offset``) - the views the kernels pass."""
    if transposed:
        return rng.standard_normal((cols, rows)).astype(dtype).T
    return rng.standard_normal((rows, cols + offset + 1)).astype(dtype)[:, offset:offset + cols]


PRODUCTS = st.tuples(st.integers(0, 9), st.integers(0, 9), st.integers(0, 9), st.booleans(),
                     st.booleans(), st.integers(0, 2), st.booleans(),
                     st.sampled_from(list(DTYPES)))


@settings(max_examples=150, deadline=None)
@given(PRODUCTS)
def test_numba_matmul_is_np_dot_on_views(case):
    m, k, n, trans_a, trans_b, offset, accumulate, dtype = case
    rng = np.random.default_rng(m * 100 + k * 10 + n)
    a = _operand(rng, m, k, dtype, trans_a, offset)
    b = _operand(rng, k, n, dtype, trans_b, offset)
    wide = rng.standard_normal((m, n + offset + 2)).astype(dtype)
    out = wide[:, offset:offset + n]  # a block of columns: rows apart by the wide stride
    expected = a.astype(np.float64) @ b + (out if accumulate else 0)
    before = wide.copy()
    numba_blas.matmul(a, b, out, accumulate)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol)
    outside = np.ones(wide.shape, bool)
    outside[:, offset:offset + n] = False
    assert np.array_equal(wide[outside], before[outside])  # nothing written beside out


def test_numba_matmul_refuses_an_operand_with_no_contiguous_axis():
    a = np.ones((8, 8), np.float32)[::2, ::2]
    with pytest.raises(ValueError, match="rows or columns must be contiguous"):
        numba_blas.matmul(a, np.ones((4, 3), np.float32), np.empty((4, 3), np.float32))


@settings(max_examples=60, deadline=None)
@given(PRODUCTS)
def test_scipy_fallback_gemm_is_cblas_gemm(case):
    """The CBLAS-shaped callback the Numba kernels call where NumPy has no CBLAS of its own,
    called as they call it: leading dimensions, transposes, beta 0 ignores C's old values."""
    m, k, n, trans_a, trans_b, offset, accumulate, dtype = case
    if 0 in (m, k, n):
        return  # matmul handles empty products itself, before BLAS
    rng = np.random.default_rng(m * 100 + k * 10 + n)
    stored_a = rng.standard_normal((k, m + offset) if trans_a else (m, k + offset)).astype(dtype)
    stored_b = rng.standard_normal((n, k + offset) if trans_b else (k, n + offset)).astype(dtype)
    op_a = stored_a[:, :m].T if trans_a else stored_a[:, :k]
    op_b = stored_b[:, :k].T if trans_b else stored_b[:, :n]
    c = rng.standard_normal((m, n + offset)).astype(dtype)
    expected = c.copy()
    expected[:, :n] = 2 * (op_a.astype(np.float64) @ op_b) + (0.5 * c[:, :n] if accumulate else 0)
    if not accumulate:
        c[:, :n] = np.nan  # beta = 0: C is never read
    pointer = ctypes.POINTER(ctypes.c_float if dtype == np.float32 else ctypes.c_double)
    gemm = numba_blas.scipy_gemm(DTYPES[dtype]).ctypes
    gemm(numba_blas.ROW_MAJOR, numba_blas.TRANS if trans_a else numba_blas.NO_TRANS,
         numba_blas.TRANS if trans_b else numba_blas.NO_TRANS, m, n, k, 2.0,
         stored_a.ctypes.data_as(pointer), stored_a.shape[1], stored_b.ctypes.data_as(pointer),
         stored_b.shape[1], 0.5 if accumulate else 0.0, c.ctypes.data_as(pointer), c.shape[1])
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(c, expected, rtol=tol, atol=tol)


def test_the_choice_is_checked_and_scipy_turns_numpy_off(monkeypatch):
    monkeypatch.setenv("MINICNN_BLAS", "mkl")
    with pytest.raises(ValueError, match="MINICNN_BLAS must be one of"):
        blas.numpy_cblas_gemm()
    monkeypatch.setenv("MINICNN_BLAS", "scipy")
    assert blas.numpy_cblas_gemm() is None


def _products_match_the_reference(backend, dtype):
    """Dense (by batch rows and by W's rows) and convolution (im2col, one channel, Winograd)
    kernels of ``backend`` against the reference's."""
    rng = np.random.default_rng(7)
    for n, k in ((5, 7), (3, 50)):
        x, w = rng.standard_normal((n, k)).astype(dtype), rng.standard_normal((k, 4)).astype(dtype)
        b, dy = rng.standard_normal(4).astype(dtype), rng.standard_normal((n, 4)).astype(dtype)
        compare(backend, "dense_forward", (x, w, b), dtype)
        compare(backend, "dense_backward", (x, w, dy), dtype)
    for x_shape, w_shape, stride, padding in (CONV_CASES[1], CONV_CASES[5], CONV_CASES[-1]):
        x = rng.standard_normal(x_shape).astype(dtype)
        w = rng.standard_normal(w_shape).astype(dtype)
        y = minicnn.backends.load("numpy").conv2d_forward(x, w, None, stride, padding)
        dy = rng.standard_normal(y.shape).astype(dtype)
        compare(backend, "conv2d_forward", (x, w, None, stride, padding), dtype)
        compare(backend, "conv2d_backward", (x, w, dy, stride, padding), dtype)


@pytest.mark.skipif("cython" not in minicnn.available_backends(), reason="Cython not built")
@pytest.mark.parametrize("library", ["numpy", "scipy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cython_kernels_on_either_blas(library, dtype):
    from minicnn.backends.cython import _kernels
    found = blas.numpy_cblas_gemm()
    if library == "numpy" and found is None:
        pytest.skip("this NumPy has no CBLAS with 64-bit sizes")
    _kernels.use_cblas(*(found if library == "numpy" else (0, 0)))
    try:
        _products_match_the_reference(minicnn.backends.load("cython"), dtype)
    finally:
        _kernels.use_cblas(*(found or (0, 0)))


def test_numba_kernels_on_scipy_blas():
    """MINICNN_BLAS=scipy binds the Numba kernels' products to the SciPy callback (a process
    of its own: the binding is made once, at import)."""
    code = ("import numpy as np, minicnn\n"
            "from minicnn.backends.numba import blas as b\n"
            "import llvmlite.binding as llvm\n"
            "assert llvm.address_of_symbol('minicnn_cblas_sgemm') == b._CALLBACKS[0].address\n"
            "from tests.backends.test_blas import _products_match_the_reference as check\n"
            "for dtype in (np.float32, np.float64):\n"
            "    check(minicnn.backends.load('numba'), dtype)\n")
    root = str(ROOT)
    env = {**os.environ, "MINICNN_BLAS": "scipy", "PYTHONPATH": root}
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=root,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
