"""Every fast backend computes what the NumPy reference computes, kernel by kernel, at one
thread and at two (the compiled CPU backends split their work by thread count).

Only kernels a backend implements itself are compared: one it inherits from the reference
is the reference (``test_every_kernel_a_backend_implements_is_compared_here``).
"""


import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minicnn
from minicnn.backends.compiled import UPDATE_BLOCK
from tests import helpers
from tests.helpers import (
    CONV_CASES,
    FAST_BACKENDS,
    POOL_CASES,
    UPDATES,
    close,
    compare,
    host,
    implements,
    numpy_ref,
)

# Each compiled CPU backend at one thread and at two; CUDA once.
FAST_AT_THREADS = [(b, t) for b in FAST_BACKENDS for t in ((None,) if b == "cuda" else (1, 2))]


@pytest.fixture(params=FAST_AT_THREADS, ids=lambda p: p[0] if p[1] is None else f"{p[0]}-{p[1]}t")
def fast(request, monkeypatch):
    """A fast backend, its threads set by MINICNN_NUM_THREADS (and Numba's pool size)."""
    name, threads = request.param
    if threads is not None:
        monkeypatch.setenv("MINICNN_NUM_THREADS", str(threads))
        before = numba.get_num_threads()
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        yield minicnn.backends.load(name)
        numba.set_num_threads(before)
    else:
        yield minicnn.backends.load(name)




@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_kernels(fast, case, dtype):
    helpers.check_conv_kernels(fast, case, dtype)


@pytest.mark.parametrize("case", CONV_CASES[-2:])
def test_winograd_cases_take_the_winograd_path(case):
    """The last two conv cases above test Winograd only if the compiled backends choose it."""
    from minicnn.backends import compiled
    from minicnn.backends.shapes import conv_geometry

    x_shape, w_shape, stride, padding = case
    g = conv_geometry(*x_shape[1:3], *w_shape[:2], stride, padding)
    assert compiled._algorithm(np.empty(w_shape), stride, g) == "winograd"


@pytest.mark.parametrize("case", CONV_CASES[-2:])
def test_winograd_in_several_blocks_per_thread(fast, case, monkeypatch):
    """A thread takes its images a block at a time (winograd.BLOCK_TILES): with blocks of
    one image, every thread runs several, and dW sums over them."""
    from minicnn.backends import winograd

    monkeypatch.setattr(winograd, "BLOCK_TILES", 1)
    x_shape, w_shape, stride, padding = case
    test_conv_kernels(fast, ((7, *x_shape[1:]), w_shape, stride, padding), np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", POOL_CASES)
def test_pool_kernels(fast, case, dtype):
    helpers.check_pool_kernels(fast, case, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", POOL_CASES)
def test_max_pool_ties_and_nan_pick_the_reference_pixel(fast, case, dtype):
    helpers.check_max_pool_ties_and_nan_pick_the_reference_pixel(fast, case, dtype)


CONV_POOL_CASES = [  # (x shape, kernel shape, stride, padding, pool): Conv2D then MaxPool2D
    ((4, 28, 28, 1), (3, 3, 1, 32), (1, 1), "valid", (2, 2)),  # cnn_b's first stage, fused
    ((3, 9, 11, 1), (3, 2, 1, 5), (2, 1), "same", (2, 3)),  # rows and columns left over
    ((5, 8, 7, 1), (2, 2, 1, 3), (1, 1), "valid", (3, 3)),
    ((1, 6, 6, 1), (1, 1, 1, 70), (1, 1), "valid", (1, 2)),  # more than 64 filters
    # 3x3 convolutions for the compiled backends' Winograd path, pooled tile by tile where
    # the windows divide the 4x4 tiles: cnn_b's second stage (11 -> 5: a row and a column
    # left over), 'same', windows of 4 or 1, then one of 3 (pooled after, unfused)
    ((3, 13, 13, 4), (3, 3, 4, 6), (1, 1), "valid", (2, 2)),
    ((2, 10, 9, 3), (3, 3, 3, 70), (1, 1), "same", (4, 1)),
    ((2, 12, 13, 2), (3, 3, 2, 5), (1, 1), "valid", (3, 3)),
    ((2, 7, 8, 3), (2, 3, 3, 4), (2, 1), "same", (2, 2)),  # im2col, then pooled: unfused
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("case", CONV_POOL_CASES)
def test_conv_maxpool_kernels(fast, case, relu, dtype):
    """The fused pair computes the reference's conv then max-pooling: the pooled output, the
    winners (ties, as between a ReLU's zeros, go to the window's first pixel), and dx, dW,
    db from the pooled output's gradient."""
    x_shape, w_shape, stride, padding, pool = case
    rng = np.random.default_rng(3)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[3]).astype(dtype)
    y, cache = numpy_ref.conv2d_maxpool_forward(x, w, b, stride, padding, pool, relu)
    helpers.record(fast, "conv2d_maxpool_forward")
    helpers.record(fast, "conv2d_maxpool_backward")
    fy, fcache = fast.conv2d_maxpool_forward(fast.to_device(x), fast.to_device(w),
                                             fast.to_device(b), stride, padding, pool, relu)
    close(fast.to_host(fy), y, dtype)
    np.testing.assert_array_equal(fast.to_host(fcache[1]), cache[1])
    assert not relu or 0 < np.count_nonzero(y) < y.size
    dy = rng.standard_normal(y.shape).astype(dtype)
    for need_dx in (True, False):
        expected = numpy_ref.conv2d_maxpool_backward(x, w, dy, y, cache, stride, padding, pool,
                                                     need_dx, relu)
        got = fast.conv2d_maxpool_backward(*(fast.to_device(a) for a in (x, w, dy)), fy, fcache,
                                           stride, padding, pool, need_dx, relu)
        assert (got[0] is None) == (not need_dx)
        for e, g in zip(expected, got):
            if e is not None:
                close(host(fast, g), e, dtype)


@pytest.mark.parametrize("name", [b for b in FAST_BACKENDS if b != "cuda"])
@pytest.mark.parametrize("case, fused", [(CONV_POOL_CASES[0], True), (CONV_POOL_CASES[4], True),
                                         (CONV_POOL_CASES[6], False)])
def test_compiled_cpu_backends_pool_as_they_convolve(name, case, fused):
    """The cases above test the fused kernels only if the compiled CPU backends take them:
    a fused pair's cache holds no convolution output (cnn_b's two stages: one channel, then
    Winograd); a 3x3 pool crosses Winograd's tiles and is pooled after the convolution."""
    x_shape, w_shape, stride, padding, pool = case
    x, w = np.ones(x_shape), np.ones(w_shape)
    backend = minicnn.backends.load(name)
    _, (z, _) = backend.conv2d_maxpool_forward(x, w, None, stride, padding, pool, True)
    assert (z is None) == fused


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_optimizer_state_below_the_normal_floats_becomes_zero(fast, dtype):
    helpers.check_optimizer_state_below_the_normal_floats_becomes_zero(fast, dtype)


@pytest.mark.parametrize("count", [1, 11])
def test_adam_over_many_parameters_updates_each_like_the_reference(fast, count):
    """adam_update_many changes every parameter, m and v as adam_update does one at a time
    in the reference."""
    rng = np.random.default_rng(8)
    shapes = [(3, 3, 1, 32), (32,), (1152, 64), (10,), (5, 7)] * 3
    arrays = [[rng.standard_normal(shape) for _ in range(4)] for shape in shapes[:count]]
    for group in arrays:
        group[3] = np.abs(group[3])  # v >= 0
    expected = [[a.copy() for a in group] for group in arrays]
    for p, g, m, v in expected:
        numpy_ref.adam_update(p, g, m, v, 1e-3, 0.9, 0.999, 1e-7)
    state = [[fast.to_device(a.copy()) for a in group] for group in arrays]
    params, grads, ms, vs = (list(column) for column in zip(*state))
    fast.adam_update_many(params, grads, ms, vs, 1e-3, 0.9, 0.999, 1e-7)
    for got, want in zip(state, expected):
        for g, w in zip(got, want):
            close(host(fast, g), w, np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_multiply_kernel(fast, dtype):
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((3, 4, 5)).astype(dtype), rng.standard_normal((3, 4, 5))
    compare(fast, "multiply", (a, b.astype(dtype)), dtype)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dtype=st.sampled_from([np.float32, np.float64]), rows=st.integers(1, 40),
       ca=st.integers(1, 9), cb=st.integers(1, 9), inner=st.integers(1, 30),
       seed=st.integers(0, 2**16))
def test_merge_kernels(fast, dtype, rows, ca, cb, inner, seed):
    helpers.check_merge_kernels(fast, dtype, rows, ca, cb, inner, seed)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_activation_loss_and_optimizer_kernels(fast, dtype):
    helpers.check_dense_activation_loss_and_optimizer_kernels(fast, dtype)




@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("update, states, args", UPDATES)
@pytest.mark.parametrize("size", [40, 2 * UPDATE_BLOCK + 7])  # one block; blocks in 2 chunks
def test_an_update_that_is_not_finite_keeps_the_old_values(fast, dtype, update, states, args,
                                                           size):
    helpers.check_an_update_that_is_not_finite_keeps_the_old_values(fast, dtype, update, states,
                                                                    args, size)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows, classes", [(1, 1), (5, 3), (70, 10)])
def test_one_hot_from_class_indices(fast, dtype, rows, classes):
    helpers.check_one_hot_from_class_indices(fast, dtype, rows, classes)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, rate", [((1,), 0.5), ((7, 3), 0.25), ((64, 7, 7, 64), 0.5),
                                         ((1000,), 0.9)])
def test_dropout_draws_the_reference_mask(fast, dtype, shape, rate):
    helpers.check_dropout_draws_the_reference_mask(fast, dtype, shape, rate)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("smoothing, uniform", [(0.1, 0.1), (0.25, 0.5), (0.0, 1 / 3)])
def test_smooth_labels(fast, dtype, smoothing, uniform):
    helpers.check_smooth_labels(fast, dtype, smoothing, uniform)


def _three_conv_cnn():
    from minicnn import Sequential
    from minicnn.layers import Conv2D, Dense, Flatten, MaxPool2D
    return Sequential([
        Conv2D(8, (3, 3), activation="relu", input_shape=(16, 16, 1)),
        MaxPool2D((2, 2)),
        Conv2D(8, (3, 3), activation="relu"),
        MaxPool2D((2, 2)),
        Conv2D(16, (2, 2), activation="relu"),
        Flatten(),
        Dense(16, activation="relu"),
        Dense(4, activation="softmax"),
    ])


@pytest.mark.parametrize("name", FAST_BACKENDS)
def test_training_run_matches_reference(name, float64):
    from tests.helpers import synthetic_images
    x, y = synthetic_images(64, 16)
    weights = {}
    for backend in ("numpy", name):
        with minicnn.use_backend(backend):
            model = _three_conv_cnn()
            model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
            model.fit(x, y, batch_size=16, epochs=2, seed=7, verbose=0)
            weights[backend] = model.get_weights()
    for ref, got in zip(weights["numpy"], weights[name]):
        np.testing.assert_allclose(got, ref, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [1, 7, 1000])
def test_batchnorm_kernels(fast, dtype, rows):
    rng = np.random.default_rng(4)
    x = (3 * rng.standard_normal((rows, 5)) + 2).astype(dtype)
    gamma, beta = rng.random(5).astype(dtype), rng.standard_normal(5).astype(dtype)
    compare(fast, "moments", (x,), dtype)
    mean, var = numpy_ref.moments(x)
    dy = rng.standard_normal(x.shape).astype(dtype)
    compare(fast, "batchnorm_forward", (x, gamma, beta, mean, var, 1e-3), dtype)
    compare(fast, "batchnorm_relu_forward", (x, gamma, beta, mean, var, 1e-3), dtype)
    y, x_hat = numpy_ref.batchnorm_relu_forward(x, gamma, beta, mean, var, 1e-3)
    for batch_stats in (True, False):
        compare(fast, "batchnorm_backward", (x_hat, gamma, var, 1e-3, dy, batch_stats), dtype)
        compare(fast, "batchnorm_relu_backward",
                 (x_hat, gamma, beta, var, 1e-3, y, dy, batch_stats), dtype)


# Kernels that only move or view memory (``to_host`` is how every comparison reads back).
MEMORY = {"to_device", "to_host", "zeros_like", "reshape"}
# CUDA's host fallbacks run the reference on copies of device arrays: test_cuda.py
CUDA_HOST_FALLBACKS = {"add_scaled", "weight_penalty", "moving_average", "rmsprop_update",
                       "sigmoid_binary_cross_entropy", "probability_cross_entropy",
                       "probability_binary_cross_entropy", "count_top_k", "count_binary_correct"}


@pytest.mark.parametrize("name", FAST_BACKENDS)
def test_every_kernel_a_backend_implements_was_compared_above(name):
    """Last in this file: every kernel ``name`` implements itself (not the reference's) was
    compared with the reference by a test above, as ``compare`` and
    ``helpers.record`` noted this session."""
    from minicnn.backends.contract import KERNELS
    compared = helpers.COMPARED_RUNS.get(name)
    if not compared:
        pytest.skip("no comparison of this backend ran in this session: run the whole file")
    backend = minicnn.backends.load(name)
    own = {k for k in KERNELS if implements(backend, k)} - MEMORY
    if name == "cuda":
        own -= CUDA_HOST_FALLBACKS
    assert not own - compared, f"{name} implements {sorted(own - compared)} but nothing " \
        "compared them with the reference"
