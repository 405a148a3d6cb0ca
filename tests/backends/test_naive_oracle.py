"""The vectorised reference (im2col, sliding windows) against the textbook's loops
(``reference/naive.py``): shapes, strides and paddings drawn by Hypothesis, float64."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from minicnn.backends.reference import conv, naive, pool
from minicnn.backends.shapes import conv_geometry


@st.composite
def conv_cases(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    padding = draw(st.sampled_from(["valid", "same"]))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    h, w = draw(st.integers(kh, 7)), draw(st.integers(kw, 7))
    n, c, f = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**16))
    return (n, h, w, c), (kh, kw, c, f), stride, padding, seed


@st.composite
def pool_cases(draw):
    pool_size = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(st.sampled_from(["valid", "same"]))
    h, w = draw(st.integers(pool_size[0], 7)), draw(st.integers(pool_size[1], 7))
    shape = (draw(st.integers(1, 2)), h, w, draw(st.integers(1, 3)))
    return shape, pool_size, stride, padding, draw(st.integers(0, 2**16))


@settings(max_examples=40, deadline=None)
@given(conv_cases(), st.booleans())
def test_conv_forward_and_backward_are_the_loops(case, with_bias):
    x_shape, w_shape, stride, padding, seed = case
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[3]) if with_bias else None
    y = conv.conv2d_forward(x, w, b, stride, padding)
    np.testing.assert_allclose(y, naive.conv2d_forward_loops(x, w, b, stride, padding),
                               rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = conv.conv2d_backward(x, w, dy, stride, padding)
    want = naive.conv2d_backward_loops(x, w, dy, stride, padding)
    for got, expected in zip((dx, dw, db), want):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(pool_cases(), st.booleans())
def test_pooling_forward_and_backward_are_the_loops(case, ties):
    x_shape, pool_size, stride, padding, seed = case
    rng = np.random.default_rng(seed)
    # integers make ties: the first maximum (row by row) must win in both
    x = rng.integers(-2, 3, x_shape).astype(float) if ties else rng.standard_normal(x_shape)
    y, cache = pool.maxpool2d_forward(x, pool_size, stride, padding)
    np.testing.assert_array_equal(y, naive.maxpool2d_forward_loops(x, pool_size, stride,
                                                                   padding))
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(
        pool.maxpool2d_backward(dy, cache, x.shape, pool_size, stride, padding),
        naive.maxpool2d_backward_loops(x, dy, pool_size, stride, padding), rtol=0, atol=1e-12)
    np.testing.assert_allclose(pool.avgpool2d_forward(x, pool_size, stride, padding),
                               naive.avgpool2d_forward_loops(x, pool_size, stride, padding),
                               rtol=1e-12, atol=1e-12)


def test_the_loops_know_a_convolution_by_hand():
    """A 3x3 image of 1..9 and a 2x2 kernel of ones: each output sums a window."""
    x = np.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    w = np.ones((2, 2, 1, 1))
    y = naive.conv2d_forward_loops(x, w, np.array([0.5]), (1, 1), "valid")
    np.testing.assert_array_equal(y[0, :, :, 0], [[12.5, 16.5], [24.5, 28.5]])
    g = conv_geometry(3, 3, 2, 2, (1, 1), "same")
    assert (g.out_h, g.pad_top, g.pad_bottom) == (3, 0, 1)  # TensorFlow pads at the end
