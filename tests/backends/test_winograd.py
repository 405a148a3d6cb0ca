"""Winograd F(4x4, 3x3): the matrices compute a 3-tap correlation, and the numba backend's
written-out transforms are those matrices."""

import numpy as np
import pytest

from minicnn.backends import winograd


def test_the_matrices_compute_a_correlation():
    """y = A^T [(G g) * (B^T d)] is y[i] = sum_k d[i + k] g[k], in 1-D and nested in 2-D."""
    rng = np.random.default_rng(0)
    d, g = rng.standard_normal(6), rng.standard_normal(3)
    y = winograd.AT @ ((winograd.G @ g) * (winograd.BT @ d))
    np.testing.assert_allclose(y, [d[i:i + 3] @ g for i in range(4)], rtol=1e-12)
    d2, g2 = rng.standard_normal((6, 6)), rng.standard_normal((3, 3))
    u, v = winograd.G @ g2 @ winograd.G.T, winograd.BT @ d2 @ winograd.BT.T
    y2 = winograd.AT @ (u * v) @ winograd.AT.T
    expected = [[np.sum(d2[i:i + 3, j:j + 3] * g2) for j in range(4)] for i in range(4)]
    np.testing.assert_allclose(y2, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_transforms_are_the_matrices(dtype):
    kernels = pytest.importorskip("minicnn.backends.numba.winograd")
    matrices = {kernels.BT: winograd.BT, kernels.B: winograd.BT.T,
                kernels.AT: winograd.AT, kernels.A: winograd.AT.T,
                kernels.G: winograd.G, kernels.GT: winograd.G.T}
    rng = np.random.default_rng(1)
    for kind, matrix in matrices.items():
        s = rng.standard_normal((matrix.shape[1], 37)).astype(dtype)
        d = np.empty((matrix.shape[0], 37), dtype)
        kernels._transform(kind, s, d)
        assert d.dtype == dtype
        tol = 1e-5 if dtype == np.float32 else 1e-13
        np.testing.assert_allclose(d, matrix @ s.astype(np.float64), rtol=tol, atol=tol)


def test_which_layers_take_it():
    assert winograd.applies((3, 3, 32, 64), (1, 1), 11, 11)  # cnn_b's second conv
    assert not winograd.applies((3, 3, 64, 128), (1, 1), 3, 3)  # its third: one 4x4 tile
    assert not winograd.applies((3, 3, 1, 32), (1, 1), 26, 26)  # one channel: direct conv
    assert not winograd.applies((3, 3, 8, 8), (2, 2), 13, 13)
    assert not winograd.applies((5, 5, 8, 8), (1, 1), 13, 13)
    assert winograd.tiles(11, 8) == (3, 2)
