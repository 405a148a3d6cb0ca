"""The compiled backends' results do not depend on how their work is split: every kernel
that cuts its rows into per-thread chunks, at 1, 2, 3, 7, 16 and 64 threads (more than this
machine has: the chunks are what matter), on shapes with fewer rows than threads, against
the reference."""

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import minicnn
from minicnn.backends.threads import chunks_for
from tests.helpers import compare, numpy_ref

COMPILED = [b for b in minicnn.available_backends() if b in ("numba", "cython")]
THREADS = [1, 2, 3, 7, 16, 64]
FIXTURE = HealthCheck.function_scoped_fixture  # the backend is the same for every example


@pytest.fixture(params=[(b, t) for b in COMPILED for t in THREADS],
                ids=lambda p: f"{p[0]}-{p[1]}t")
def split(request, monkeypatch):
    """A compiled backend that cuts its work for ``threads`` threads."""
    name, threads = request.param
    backend = minicnn.backends.load(name)
    monkeypatch.setattr(type(backend), "_threads", lambda self: threads)
    assert backend._chunks(10 * threads) == threads
    return backend


@given(n=st.integers(1, 200), threads=st.integers(1, 64))
def test_no_chunk_is_empty_and_they_cover_every_row(n, threads):
    chunks = chunks_for(n, threads)
    step = -(-n // chunks)
    assert 1 <= chunks <= min(n, threads)
    assert (chunks - 1) * step < n <= chunks * step  # the last one starts inside the rows


@settings(max_examples=15, deadline=None, suppress_health_check=[FIXTURE])
@given(rows=st.integers(1, 9), inputs=st.integers(1, 120), units=st.integers(1, 5),
       seed=st.integers(0, 2**16))
@example(rows=2, inputs=36, units=3, seed=0)  # the audit's: W's 36 rows at 16 threads
@example(rows=1, inputs=100, units=2, seed=0)  # and 100 inputs at 64
def test_dense_kernels(split, rows, inputs, units, seed):
    """By the batch's rows, or by W's rows when the weights outweigh the batch (36 inputs
    at 16 threads left four chunks of W's rows empty)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, inputs))
    w, b = rng.standard_normal((inputs, units)), rng.standard_normal(units)
    dy = rng.standard_normal((rows, units))
    compare(split, "dense_forward", (x, w, b), np.float64)
    compare(split, "dense_backward", (x, w, dy), np.float64)
    y = numpy_ref.dense_relu_forward(x, w, b)
    compare(split, "dense_relu_forward", (x, w, b), np.float64)
    compare(split, "dense_relu_backward", (x, w, y, dy, True), np.float64)


@settings(max_examples=10, deadline=None, suppress_health_check=[FIXTURE])
@given(n=st.integers(1, 5), channels=st.sampled_from([1, 3]), side=st.sampled_from([6, 10]),
       seed=st.integers(0, 2**16))
def test_conv_and_pool_kernels(split, n, channels, side, seed):
    """One input channel (plane), 3x3 on a 10x10 image with channels (Winograd), else
    im2col; the fused max-pool pair; pooling."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, side, side, channels))
    w, b = rng.standard_normal((3, 3, channels, 4)), rng.standard_normal(4)
    y = numpy_ref.conv2d_forward(x, w, b, (1, 1), "valid")
    dy = rng.standard_normal(y.shape)
    compare(split, "conv2d_forward", (x, w, b, (1, 1), "valid"), np.float64)
    compare(split, "conv2d_backward", (x, w, dy, (1, 1), "valid"), np.float64)
    pooled, cache = numpy_ref.conv2d_maxpool_forward(x, w, b, (1, 1), "valid", (2, 2), True)
    fast_pooled, fast_cache = split.conv2d_maxpool_forward(x, w, b, (1, 1), "valid", (2, 2),
                                                           True)
    np.testing.assert_allclose(fast_pooled, pooled, rtol=1e-10, atol=1e-10)
    dp = rng.standard_normal(pooled.shape)
    for want, got in zip(
            numpy_ref.conv2d_maxpool_backward(x, w, dp, pooled, cache, (1, 1), "valid",
                                              (2, 2), True, True),
            split.conv2d_maxpool_backward(x, w, dp, fast_pooled, fast_cache, (1, 1), "valid",
                                          (2, 2), True, True)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    compare(split, "avgpool2d_forward", (x, (2, 2), (2, 2), "valid"), np.float64)


@settings(max_examples=10, deadline=None, suppress_health_check=[FIXTURE])
@given(rows=st.integers(1, 20), channels=st.integers(1, 4), size=st.integers(1, 100),
       seed=st.integers(0, 2**16))
def test_batchnorm_loss_and_update_kernels(split, rows, channels, size, seed):
    """BatchNorm's per-chunk sums, the loss per row, Adam's and SGD's chunks of elements."""
    rng = np.random.default_rng(seed)
    x = 3 * rng.standard_normal((rows, channels)) + 1
    gamma, beta = rng.random(channels) + 0.5, rng.standard_normal(channels)
    compare(split, "moments", (x,), np.float64)
    mean, var = numpy_ref.moments(x)
    _, x_hat = numpy_ref.batchnorm_forward(x, gamma, beta, mean, var, 1e-3)
    dy = rng.standard_normal(x.shape)
    compare(split, "batchnorm_backward", (x_hat, gamma, var, 1e-3, dy, True), np.float64)
    logits, y = rng.standard_normal((rows, 3)), np.eye(3)[rng.integers(0, 3, rows)]
    compare(split, "softmax_cross_entropy", (logits, y), np.float64)
    p, g = rng.standard_normal(size), rng.standard_normal(size)
    state = [rng.standard_normal(size), rng.random(size)]
    ref = [a.copy() for a in (p, *state)]
    numpy_ref.adam_update(ref[0], g, ref[1], ref[2], 0.01, 0.9, 0.999, 1e-7)
    got = [a.copy() for a in (p, *state)]
    split.adam_update(got[0], g, got[1], got[2], 0.01, 0.9, 0.999, 1e-7)
    for r, a in zip(ref, got):
        np.testing.assert_allclose(a, r, rtol=1e-12, atol=1e-12)
