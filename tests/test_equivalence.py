"""Every fast backend computes what the NumPy reference computes, kernel by kernel, at one
thread and at two (the compiled CPU backends split their work by thread count).

Only kernels a backend implements itself are compared: one it inherits from the reference
is the reference (``test_every_kernel_a_backend_implements_is_compared_here``).
"""

import inspect

import numba
import numpy as np
import pytest

import minicnn
from minicnn.backends.compiled import UPDATE_BLOCK
from minicnn.backends.reference import NumpyBackend, activations
from tests.conftest import FAST_BACKENDS

numpy_ref = NumpyBackend()

CONV_CASES = [  # (x shape, kernel shape, stride, padding)
    ((1, 7, 9, 1), (3, 3, 1, 4), (1, 1), "valid"),
    ((3, 8, 7, 3), (3, 2, 3, 5), (2, 2), "same"),
    ((2, 9, 9, 3), (5, 5, 3, 2), (2, 1), "valid"),
    ((2, 5, 6, 2), (4, 4, 2, 3), (3, 2), "same"),
    ((4, 28, 28, 1), (3, 3, 1, 32), (1, 1), "valid"),
    ((2, 6, 7, 1), (3, 2, 1, 4), (2, 1), "same"),  # one channel: numba's plane kernels
    ((5, 9, 11, 1), (5, 4, 1, 3), (2, 1), "same"),  # (several images per thread)
    # 3x3, stride 1, several channels, outputs >= 8: the compiled backends' Winograd path
    # (partial tiles at the edges: 11 = 4 + 4 + 3, 'same' padding read as zeros)
    ((3, 13, 13, 8), (3, 3, 8, 16), (1, 1), "valid"),
    ((2, 10, 9, 5), (3, 3, 5, 7), (1, 1), "same"),
]
POOL_CASES = [  # (x shape, pool, stride, padding)
    ((2, 8, 8, 3), (2, 2), (2, 2), "valid"), ((1, 7, 9, 1), (3, 3), (2, 2), "valid"),
    ((3, 5, 5, 2), (2, 3), (1, 2), "valid"), ((2, 7, 5, 3), (2, 2), (2, 2), "same"),
    ((1, 6, 7, 2), (3, 2), (1, 3), "same"), ((2, 4, 5, 3), (4, 5), (4, 5), "valid"),
    ((2, 5, 6, 2), (3, 3), (1, 1), "same"),
    ((1, 5, 6, 70), (3, 3), (2, 2), "same"),  # more channels than Cython's block of 64
]


def _close(a, b, dtype):
    tol = 1e-10 if dtype == np.float64 else 2e-4
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


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


def implements(backend, kernel: str) -> bool:
    """Whether ``backend``'s class defines ``kernel`` itself (not the reference's)."""
    return (inspect.getattr_static(type(backend), kernel)
            is not inspect.getattr_static(NumpyBackend, kernel))


# Every kernel the tests below compare with the reference.
COMPARED = {
    "conv2d_forward", "conv2d_backward", "maxpool2d_forward", "maxpool2d_backward",
    "avgpool2d_forward", "avgpool2d_backward", "conv2d_maxpool_forward",
    "conv2d_maxpool_backward", "dense_forward", "dense_backward", "activation_forward",
    "conv2d_relu_forward", "conv2d_relu_backward", "conv2d_weight_gradients",
    "dense_relu_forward", "dense_relu_backward", "dense_weight_gradients",
    "batchnorm_relu_forward", "batchnorm_relu_backward",
    "activation_backward", "multiply", "moments", "batchnorm_forward", "batchnorm_backward",
    "softmax_cross_entropy", "mean_squared_error",
    "count_correct", "adam_update", "adam_update_many", "sgd_update", "take_rows",
    "one_hot", "smooth_labels", "dropout",
}
# Kernels that only move or view memory (``to_host`` is how every comparison reads back).
MEMORY = {"to_device", "to_host", "zeros_like", "reshape"}


@pytest.mark.parametrize("name", FAST_BACKENDS)
def test_every_kernel_a_backend_implements_is_compared_here(name):
    from minicnn.backends.contract import KERNELS
    backend = minicnn.backends.load(name)
    own = {k for k in KERNELS if implements(backend, k)} - MEMORY
    missing = own - COMPARED
    if name == "cuda":  # its host fallbacks run the reference on copies: test_cuda.py
        missing -= {"add_scaled", "weight_penalty", "moving_average", "rmsprop_update",
                    "sigmoid_binary_cross_entropy", "probability_cross_entropy",
                    "probability_binary_cross_entropy", "count_top_k", "count_binary_correct"}
    assert not missing, f"{name} implements {sorted(missing)} but nothing compares them"


def _host(backend, value):
    return backend.to_host(value) if hasattr(value, "shape") else value


def _compare(backend, name, args, dtype):
    """Run kernel ``name`` on both backends; compare every array it returns."""
    assert implements(backend, name), f"{backend.name} does not implement {name}"
    expected = getattr(numpy_ref, name)(*args)
    got = getattr(backend, name)(*[backend.to_device(a) if isinstance(a, np.ndarray) else a
                                   for a in args])
    if not isinstance(expected, tuple):
        expected, got = (expected,), (got,)
    for e, g in zip(expected, got):
        if e is None:  # dx without need_dx
            assert g is None
        else:
            _close(_host(backend, g), e, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_kernels(fast, case, dtype):
    x_shape, w_shape, stride, padding = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[3]).astype(dtype)
    y = numpy_ref.conv2d_forward(x, w, b, stride, padding)
    dy = rng.standard_normal(y.shape).astype(dtype)
    _compare(fast, "conv2d_forward", (x, w, b, stride, padding), dtype)
    _compare(fast, "conv2d_backward", (x, w, dy, stride, padding), dtype)
    # the fused ReLU: its epilogue, and the gradient sent back through it; the first layer's
    _compare(fast, "conv2d_relu_forward", (x, w, b, stride, padding), dtype)
    a = numpy_ref.conv2d_relu_forward(x, w, b, stride, padding)
    assert 0 < np.count_nonzero(a) < a.size
    for need_dx in (True, False):
        _compare(fast, "conv2d_relu_backward", (x, w, a, dy, stride, padding, need_dx), dtype)
    _compare(fast, "conv2d_weight_gradients", (x, w, dy, stride, padding), dtype)


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
    x_shape, pool, stride, padding = case
    rng = np.random.default_rng(1)
    x = rng.standard_normal(x_shape).astype(dtype)
    y, cache = numpy_ref.maxpool2d_forward(x, pool, stride, padding)
    fy, fcache = fast.maxpool2d_forward(fast.to_device(x), pool, stride, padding)
    _close(fast.to_host(fy), y, dtype)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = numpy_ref.maxpool2d_backward(dy, cache, x.shape, pool, stride, padding)
    _close(fast.to_host(fast.maxpool2d_backward(fast.to_device(dy), fcache, x.shape, pool,
                                                stride, padding)), dx, dtype)
    _compare(fast, "avgpool2d_forward", (x, pool, stride, padding), dtype)
    _compare(fast, "avgpool2d_backward", (dy, x.shape, pool, stride, padding), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", POOL_CASES)
def test_max_pool_ties_and_nan_pick_the_reference_pixel(fast, case, dtype):
    """Ties go to the first pixel of the window, a NaN beats every number (np.argmax's
    rules): the cache, and so the backward pass, must name the reference's pixel."""
    x_shape, pool, stride, padding = case
    rng = np.random.default_rng(2)
    x = rng.integers(-1, 2, x_shape).astype(dtype)  # many ties
    x[rng.random(x_shape) < 0.1] = np.nan
    y, cache = numpy_ref.maxpool2d_forward(x, pool, stride, padding)
    fy, fcache = fast.maxpool2d_forward(fast.to_device(x), pool, stride, padding)
    np.testing.assert_array_equal(fast.to_host(fy), y)
    np.testing.assert_array_equal(fast.to_host(fcache), cache)


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
    fy, fcache = fast.conv2d_maxpool_forward(fast.to_device(x), fast.to_device(w),
                                             fast.to_device(b), stride, padding, pool, relu)
    _close(fast.to_host(fy), y, dtype)
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
                _close(_host(fast, g), e, dtype)


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
    """Adam's m and v and SGD's velocity that decay below the smallest normal float become 0
    on every backend, as in the reference (optimizers.flush_to_zero): a dead unit's state would
    otherwise linger among the denormals, where CPU arithmetic is many times slower."""
    tiny = np.finfo(dtype).tiny
    live = np.arange(64) % 4 == 0
    g = np.where(live, 1e-3, 0.0).astype(dtype)
    # one step of decay (m and velocity x0.9, v x0.999) from the denormals
    fast_decay, slow_decay = np.full(64, 1.05 * tiny, dtype), np.full(64, 1.0005 * tiny, dtype)
    arrays = {"p": np.ones(64, dtype), "m": fast_decay, "v": slow_decay, "velocity": fast_decay}
    results = {}
    for backend in (numpy_ref, fast):
        got = {k: backend.to_device(a.copy()) for k, a in arrays.items()}
        backend.adam_update(got["p"], backend.to_device(g), got["m"], got["v"], 1e-3, 0.9,
                            0.999, 1e-7)
        backend.sgd_update(got["p"], backend.to_device(g), got["velocity"], 0.01, 0.9)
        results[backend] = {k: backend.to_host(a) for k, a in got.items()}
    for key in arrays:
        reference, value = results[numpy_ref][key], results[fast][key]
        _close(value, reference, dtype)
        if key != "p":
            assert np.all(value[~live] == 0) and np.all(np.abs(value[live]) >= tiny), key


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
            _close(_host(fast, g), w, np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_multiply_kernel(fast, dtype):
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((3, 4, 5)).astype(dtype), rng.standard_normal((3, 4, 5))
    _compare(fast, "multiply", (a, b.astype(dtype)), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_activation_loss_and_optimizer_kernels(fast, dtype):
    rng = np.random.default_rng(3)
    # (batch, inputs): the compiled backends split the batch, then W's rows, across threads;
    # one input or one sample leaves a thread nothing to do. Many inputs per row (3, 50)
    # split every product by W's rows (compiled.split_by_weight_rows).
    for n, k in ((1, 3), (5, 1), (5, 7), (3, 50)):
        x, w = rng.standard_normal((n, k)).astype(dtype), rng.standard_normal((k, 4)).astype(dtype)
        b, dy = rng.standard_normal(4).astype(dtype), rng.standard_normal((n, 4)).astype(dtype)
        _compare(fast, "dense_forward", (x, w, b), dtype)
        _compare(fast, "dense_backward", (x, w, dy), dtype)
        _compare(fast, "dense_relu_forward", (x, w, b), dtype)
        a = numpy_ref.dense_relu_forward(x, w, b)
        for need_dx in (True, False):
            _compare(fast, "dense_relu_backward", (x, w, a, dy, need_dx), dtype)
        _compare(fast, "dense_weight_gradients", (x, w, dy), dtype)
    z = (10 * rng.standard_normal((6, 3, 4))).astype(dtype)
    for name in activations.ACTIVATIONS:
        a = numpy_ref.activation_forward(name, z)
        _compare(fast, "activation_forward", (name, z), dtype)
        da = rng.standard_normal(z.shape).astype(dtype)
        _compare(fast, "activation_backward", (name, z, a, da), dtype)
    y = np.eye(4, dtype=dtype)[rng.integers(0, 4, 5)]
    logits = (30 * rng.standard_normal((5, 4))).astype(dtype)
    _compare(fast, "softmax_cross_entropy", (logits, y), dtype)
    for name in ("mean_squared_error", "count_correct"):  # CUDA's own; the CPUs' are the ref's
        if implements(fast, name):
            _compare(fast, name, (logits, y), dtype)
    p, g = rng.standard_normal(9).astype(dtype), rng.standard_normal(9).astype(dtype)
    m, v = rng.standard_normal(9).astype(dtype), rng.random(9).astype(dtype)
    for update, args in (("adam_update", (0.01, 0.9, 0.999, 1e-7)),
                         ("sgd_update", (0.1, 0.9, False)), ("sgd_update", (0.1, 0.0, False)),
                         ("sgd_update", (0.1, 0.9, True))):
        ref = [a.copy() for a in (p, g, m, v)]
        dev = [fast.to_device(a.copy()) for a in (p, g, m, v)]
        state_ref = ref[2:] if update == "adam_update" else ref[2:3]
        state_dev = dev[2:] if update == "adam_update" else dev[2:3]
        getattr(numpy_ref, update)(ref[0], ref[1], *state_ref, *args)
        getattr(fast, update)(dev[0], dev[1], *state_dev, *args)
        for r, d in zip(ref, dev):
            _close(fast.to_host(d), r, dtype)


UPDATES = [  # (kernel, its state arrays, momentum and nesterov or Adam's betas and eps)
    ("adam_update", 2, (0.9, 0.999, 1e-7)), ("sgd_update", 1, (0.9, False)),
    ("sgd_update", 1, (0.0, False)), ("sgd_update", 1, (0.9, True))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("update, states, args", UPDATES)
@pytest.mark.parametrize("size", [40, 2 * UPDATE_BLOCK + 7])  # one block; blocks in 2 chunks
def test_an_update_that_is_not_finite_keeps_the_old_values(fast, dtype, update, states, args,
                                                           size):
    """NaN and inf gradients and a step past the largest float: those elements keep all
    their old values (the reference's keep_finite), the others update; the count comes
    back (CUDA: the step's flag says KEPT). The compiled backends update a block at a time
    and put back what is not finite: the bad elements sit in different blocks and chunks."""
    rng = np.random.default_rng(4)
    big = np.finfo(dtype).max
    nan, inf, overflow = 3, size // 2, size - 1
    p, g = rng.standard_normal(size).astype(dtype), 1e-3 * rng.standard_normal(size).astype(dtype)
    g[nan], g[inf] = np.nan, -np.inf
    p[overflow], g[overflow] = 0.95 * big, -1  # a step of about lr = big / 10 upwards: overflows
    state = [(0.5 + 0.5 * rng.random(size)).astype(dtype) for _ in range(states)]
    state[0][overflow] = -1 if update == "adam_update" else 0
    args = (float(big) / 10, *args)
    ref = [a.copy() for a in (p, g, *state)]
    kept = getattr(numpy_ref, update)(ref[0], ref[1], *ref[2:], *args)
    assert kept == 3 and all(np.isfinite(a).all() for i, a in enumerate(ref) if i != 1)
    for i in (nan, inf, overflow):
        assert ref[0][i] == p[i] and all(r[i] == s[i] for r, s in zip(ref[2:], state))
    dev = [fast.to_device(a.copy()) for a in (p, g, *state)]
    if fast.on_device:  # the count goes to the step's flag, on the device
        from minicnn.backends.cuda.optimizers import KEPT, guarded_update
        flag = fast.to_device(np.zeros(1, np.int32))
        with guarded_update(flag):
            assert getattr(fast, update)(dev[0], dev[1], *dev[2:], *args) == 0
        assert fast.to_host(flag)[0] == KEPT
    else:
        assert getattr(fast, update)(dev[0], dev[1], *dev[2:], *args) == kept
    for i, (r, d) in enumerate(zip(ref, dev)):
        if i != 1:
            np.testing.assert_allclose(fast.to_host(d), r, rtol=2e-4 if dtype == np.float32
                                       else 1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows, classes", [(1, 1), (5, 3), (70, 10)])
def test_one_hot_from_class_indices(fast, dtype, rows, classes):
    """Sparse labels (class indices in the compute dtype) -> each batch's one-hot rows."""
    labels = np.random.default_rng(rows).integers(0, classes, rows).astype(dtype)
    got = fast.to_host(fast.one_hot(fast.to_device(labels), classes))
    assert got.dtype == dtype
    assert np.array_equal(got, numpy_ref.one_hot(labels, classes))
    assert np.array_equal(got.argmax(axis=1), labels) and np.all(got.sum(axis=1) == 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, rate", [((1,), 0.5), ((7, 3), 0.25), ((64, 7, 7, 64), 0.5),
                                         ((1000,), 0.9)])
def test_dropout_draws_the_reference_mask(fast, dtype, shape, rate):
    """Every backend keeps exactly the reference's elements (integer draws from the key and
    the flat index), scaled by 1 / (1 - rate); the same key remakes the mask (the backward),
    another key draws a new one, and the kept share is 1 - rate."""
    x = np.random.default_rng(5).standard_normal(shape).astype(dtype)
    key = 2**63 + 12345  # keys use all 64 bits
    want = numpy_ref.dropout(x, rate, key)
    got = fast.to_host(fast.dropout(fast.to_device(x), rate, key))
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(fast.to_host(fast.dropout(fast.to_device(x), rate, key)), want)
    kept = want != 0
    np.testing.assert_array_equal(want[kept], x[kept] * dtype(1 / (1 - rate)))
    if x.size >= 1000:
        assert abs(kept.mean() - (1 - rate)) < 0.02
        assert not np.array_equal(kept, numpy_ref.dropout(x, rate, key + 1) != 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("smoothing, uniform", [(0.1, 0.1), (0.25, 0.5), (0.0, 1 / 3)])
def test_smooth_labels(fast, dtype, smoothing, uniform):
    """Label smoothing's targets (1 - s) y + s u, in y's dtype."""
    y = np.eye(7, dtype=dtype)[np.random.default_rng(2).integers(0, 7, 33)]
    got = fast.to_host(fast.smooth_labels(fast.to_device(y), smoothing, uniform))
    assert got.dtype == dtype
    np.testing.assert_allclose(got, numpy_ref.smooth_labels(y, smoothing, uniform),
                               rtol=1e-6 if dtype == np.float32 else 1e-15)
    np.testing.assert_allclose(got, y * (1 - smoothing) + smoothing * uniform, rtol=1e-6)


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
    from tests.conftest import synthetic_images
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
    _compare(fast, "moments", (x,), dtype)
    mean, var = numpy_ref.moments(x)
    dy = rng.standard_normal(x.shape).astype(dtype)
    _compare(fast, "batchnorm_forward", (x, gamma, beta, mean, var, 1e-3), dtype)
    _compare(fast, "batchnorm_relu_forward", (x, gamma, beta, mean, var, 1e-3), dtype)
    y, x_hat = numpy_ref.batchnorm_relu_forward(x, gamma, beta, mean, var, 1e-3)
    for batch_stats in (True, False):
        _compare(fast, "batchnorm_backward", (x_hat, gamma, var, 1e-3, dy, batch_stats), dtype)
        _compare(fast, "batchnorm_relu_backward",
                 (x_hat, gamma, beta, var, 1e-3, y, dy, batch_stats), dtype)
