"""Property-based equivalence: random small models, trained a few steps on every backend,
end with the weights the NumPy reference computes.

Hypothesis draws the stack (kernel sizes, strides, both paddings, biases or none,
BatchNorm, max and average pools with their sizes, strides and paddings, Flatten or global
pooling, dense widths, Dropout, every activation), the batch size (1 included, and sizes
that are no multiple of any tile or thread count), the dtype and the optimizer.
test_cuda.py runs the same property on the CUDA backend under Numba's simulator, with
smaller shapes.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import minicnn
from tests.helpers import FAST_BACKENDS, assert_same_training, graphs, models


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.filter_too_much,
                                                           HealthCheck.function_scoped_fixture])
@given(case=models())
def test_random_models_train_like_the_reference(backend, case):
    assert_same_training(backend, case)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 4), h=st.integers(8, 17), w=st.integers(8, 17), c=st.integers(2, 6),
       f=st.integers(1, 6), padding=st.sampled_from(["valid", "same"]), relu=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_winograd_sized_convolutions_match_the_reference(backend, n, h, w, c, f, padding,
                                                         relu, dtype, seed):
    """3x3 stride-1 convolutions big enough for the compiled backends' Winograd path, every
    tile split the edges allow: forward and backward against the reference's im2col."""
    numpy_ref = minicnn.backends.load("numpy")

    fast = minicnn.backends.load(backend)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    k = rng.standard_normal((3, 3, c, f)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    y = (numpy_ref.conv2d_relu_forward if relu else numpy_ref.conv2d_forward)(
        x, k, b, (1, 1), padding)
    assume(padding == "same" or min(h, w) >= 10)  # outputs of 8 or more a side
    dy = rng.standard_normal(y.shape).astype(dtype)
    tol = 1e-10 if dtype == np.float64 else 2e-4

    def assert_close(got, expected):
        # Winograd's float32 rounding error scales with the whole tensor, not the element:
        # a near-zero entry of a weight gradient whose entries reach ~70 is off by ~2e-4.
        scale = max(1.0, float(np.abs(expected).max()) / 10)
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol * scale)

    assert_close((fast.conv2d_relu_forward if relu else fast.conv2d_forward)(
        x, k, b, (1, 1), padding), y)
    if relu:
        expected = numpy_ref.conv2d_relu_backward(x, k, y, dy, (1, 1), padding, True)
        grads = fast.conv2d_relu_backward(x, k, y, dy, (1, 1), padding, True)
    else:
        expected = numpy_ref.conv2d_backward(x, k, dy, (1, 1), padding)
        grads = fast.conv2d_backward(x, k, dy, (1, 1), padding)
    for e, g in zip(expected, grads):
        assert_close(g, e)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 5), h=st.integers(2, 14), w=st.integers(2, 14), c=st.integers(1, 3),
       f=st.integers(1, 70), kernel=st.sampled_from([(3, 3), (1, 2), (2, 3)]),
       stride=st.sampled_from([(1, 1), (2, 1)]), padding=st.sampled_from(["valid", "same"]),
       pool=st.tuples(st.integers(1, 4), st.integers(1, 4)), relu=st.booleans(),
       need_dx=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**16))
def test_conv_then_max_pool_pairs_match_the_reference(backend, n, h, w, c, f, kernel, stride,
                                                      padding, pool, relu, need_dx, dtype,
                                                      seed):
    """Sequential's fused Conv2D + MaxPool2D kernel pair (the compiled backends pool a
    one-channel convolution's output image by image, a Winograd one tile by tile) against
    the reference's two kernels."""
    numpy_ref = minicnn.backends.load("numpy")
    from minicnn.backends.shapes import conv_geometry

    g = conv_geometry(h, w, *kernel, stride, padding)
    assume(min(g.out_h, g.out_w) > 0 and g.out_h >= pool[0] and g.out_w >= pool[1])
    fast = minicnn.backends.load(backend)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    k = rng.standard_normal((*kernel, c, f)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    args = (stride, padding, pool)
    y, cache = numpy_ref.conv2d_maxpool_forward(x, k, b, *args, relu)
    fy, fcache = fast.conv2d_maxpool_forward(x, k, b, *args, relu)
    tol = 1e-10 if dtype == np.float64 else 2e-4
    np.testing.assert_allclose(fy, y, rtol=tol, atol=tol)
    if dtype == np.float64:  # (float32 sums may round two near-equal values either way)
        np.testing.assert_array_equal(fcache[1], cache[1])
    dy = rng.standard_normal(y.shape).astype(dtype)
    expected = numpy_ref.conv2d_maxpool_backward(x, k, dy, y, cache, *args, need_dx, relu)
    got = fast.conv2d_maxpool_backward(x, k, dy, fy, fcache, *args, need_dx, relu)
    for e, a in zip(expected, got):
        assert (a is None) == (e is None)
        if e is not None:
            np.testing.assert_allclose(a, e, rtol=tol, atol=tol * max(1.0, np.abs(e).max()))


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.filter_too_much,
                                                          HealthCheck.function_scoped_fixture])
@given(case=graphs())
def test_random_graphs_train_like_the_reference(backend, case):
    """Graphs: skip connections, projections, concatenations, shared layers, fan-outs."""
    assert_same_training(backend, case)
