"""Per-kernel speed at the shapes of the reference CNNs, for every available backend.

    python -m pytest benchmarks/test_bench_kernels.py --benchmark-group-by=param:shape
"""

import numpy as np
import pytest

import minicnn
from minicnn.backends import load

# (name, batch, input H=W, in channels, filters, kernel): the convolutions of cnn_a and cnn_b
CONV_SHAPES = [
    ("cnn_b.conv1", 32, 28, 1, 32, 3), ("cnn_b.conv2", 32, 13, 32, 64, 3),
    ("cnn_b.conv3", 32, 5, 64, 128, 3), ("cnn_a.conv1", 64, 28, 1, 32, 2),
    ("cnn_a.conv2", 64, 13, 32, 32, 2),
]
POOL_SHAPES = [("cnn_b.pool1", 32, 26, 32), ("cnn_a.pool1", 64, 27, 32)]
BACKENDS = minicnn.available_backends()


@pytest.fixture(autouse=True)
def backend_session(request):
    """Time kernels the way a model runs them: inside the backend's session (BLAS policy)."""
    with load(request.node.callspec.params["backend_name"]).session():
        yield


def _sync(backend, value):
    """Wait for device work: bring one array back (no-op cost on the CPU backends)."""
    first = value[0] if isinstance(value, tuple) else value
    return backend.to_host(first) if backend.on_device else first


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("shape", CONV_SHAPES, ids=[s[0] for s in CONV_SHAPES])
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_conv(benchmark, backend_name, shape, direction):
    _, n, size, c, f, k = shape
    backend = load(backend_name)
    rng = np.random.default_rng(0)
    x = backend.to_device(rng.random((n, size, size, c), dtype=np.float32))
    w = backend.to_device(rng.random((k, k, c, f), dtype=np.float32))
    b = backend.to_device(np.zeros(f, np.float32))
    y = backend.conv2d_forward(x, w, b, (1, 1), "valid")
    if direction == "forward":
        benchmark(lambda: _sync(backend, backend.conv2d_forward(x, w, b, (1, 1), "valid")))
    else:
        benchmark(lambda: _sync(backend, backend.conv2d_backward(x, w, y, (1, 1), "valid")[1]))


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("shape", CONV_SHAPES[:2] + CONV_SHAPES[3:4],
                         ids=[s[0] for s in CONV_SHAPES[:2] + CONV_SHAPES[3:4]])
def test_conv_then_pool_forward(benchmark, backend_name, shape):
    """A Conv2D and the MaxPool2D after it as one stage (the pooled output made while the
    convolution's is in cache): one input channel, and Winograd's 3x3."""
    _, n, size, c, f, k = shape
    backend = load(backend_name)
    rng = np.random.default_rng(0)
    x = backend.to_device(rng.random((n, size, size, c), dtype=np.float32))
    w = backend.to_device(rng.standard_normal((k, k, c, f)).astype(np.float32))
    b = backend.to_device(np.zeros(f, np.float32))
    benchmark(lambda: _sync(backend, backend.conv2d_maxpool_forward(x, w, b, (1, 1), "valid",
                                                                    (2, 2), True)))


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("shape", POOL_SHAPES, ids=[s[0] for s in POOL_SHAPES])
def test_maxpool_forward_backward(benchmark, backend_name, shape):
    _, n, size, c = shape
    backend = load(backend_name)
    x = backend.to_device(np.random.default_rng(0).random((n, size, size, c), dtype=np.float32))

    def step():
        y, cache = backend.maxpool2d_forward(x, (2, 2), (2, 2))
        return _sync(backend, backend.maxpool2d_backward(y, cache, x.shape, (2, 2), (2, 2)))

    benchmark(step)


# (name, batch, inputs, units, first layer): Dense layers with a ReLU (a first layer sends
# no gradient back); their products have as many rows as the batch
DENSE_SHAPES = [("mlp.dense1", 32, 784, 256, True), ("mlp.dense1.b64", 64, 784, 256, True),
                ("cnn_a.dense1", 64, 1152, 256, False), ("cnn_b.dense1", 32, 1152, 64, False)]


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("shape", DENSE_SHAPES, ids=[s[0] for s in DENSE_SHAPES])
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_dense(benchmark, backend_name, shape, direction):
    _, batch, inputs, units, first = shape
    backend = load(backend_name)
    rng = np.random.default_rng(0)
    x = backend.to_device(rng.standard_normal((batch, inputs)).astype(np.float32))
    w = backend.to_device((0.05 * rng.standard_normal((inputs, units))).astype(np.float32))
    b = backend.to_device(np.zeros(units, np.float32))
    y = backend.dense_relu_forward(x, w, b)
    if direction == "forward":
        benchmark(lambda: _sync(backend, backend.dense_relu_forward(x, w, b)))
    else:
        benchmark(lambda: _sync(backend, backend.dense_relu_backward(x, w, y, y, not first)[1]))


# (name, shape): the largest weights of the MLP and of cnn_a, which Adam updates every step
UPDATE_SHAPES = [("mlp.dense", (784, 256)), ("cnn_a.dense", (1152, 256))]


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("shape", UPDATE_SHAPES, ids=[s[0] for s in UPDATE_SHAPES])
def test_adam_update(benchmark, backend_name, shape):
    _, size = shape
    backend = load(backend_name)
    rng = np.random.default_rng(0)
    p, g = (backend.to_device(rng.standard_normal(size).astype(np.float32)) for _ in "pg")
    m, v = (backend.to_device(np.zeros(size, np.float32)) for _ in "mv")
    benchmark(lambda: _sync(backend, (p, backend.adam_update(p, g, m, v, 1e-3, 0.9, 0.999, 1e-7))))
