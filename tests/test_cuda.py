"""The CUDA backend on small shapes, fast enough for Numba's simulator (CI runs this file with
NUMBA_ENABLE_CUDASIM=1). On a machine with a GPU, the CUDA backend also joins every
parametrised test in test_gradcheck.py and test_equivalence.py."""

import numpy as np
import pytest

import minicnn
from minicnn.backends import numpy_ref
from minicnn.gradcheck import check_layer
from minicnn.layers import Conv2D, Dense, MaxPool2D
from tests import test_equivalence as equivalence
from tests.test_equivalence import _close, _compare

pytestmark = pytest.mark.skipif("cuda" not in minicnn.available_backends(),
                                reason="needs a GPU or NUMBA_ENABLE_CUDASIM=1 (CI sets it)")


@pytest.fixture
def cuda():
    with minicnn.use_backend("cuda") as backend:
        yield backend


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [((2, 4, 5, 2), (2, 3, 2, 3), (1, 1), "valid"),
                                  ((1, 5, 4, 1), (3, 2, 1, 2), (2, 2), "same")])
def test_conv_kernels_match_reference(cuda, case, dtype):
    equivalence.test_conv_kernels(cuda, case, dtype)


@pytest.mark.parametrize("case", [((2, 5, 4, 2), (2, 2), (2, 2)), ((1, 5, 4, 2), (3, 2), (1, 1))])
def test_pool_kernels_match_reference(cuda, case):
    equivalence.test_pool_kernels(cuda, case, np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_activation_loss_and_update_kernels(cuda, dtype):
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((3, 5)).astype(dtype), rng.standard_normal((5, 4)).astype(dtype)
    b, dy = rng.standard_normal(4).astype(dtype), rng.standard_normal((3, 4)).astype(dtype)
    _compare(cuda, "dense_forward", (x, w, b), dtype)
    _compare(cuda, "dense_backward", (x, w, dy), dtype)
    z = (10 * rng.standard_normal((3, 4))).astype(dtype)
    for name in ("relu", "sigmoid", "softmax"):
        _compare(cuda, "activation_forward", (name, z), dtype)
        a = numpy_ref.activation_forward(name, z)
        _compare(cuda, "activation_backward", (name, a, dy), dtype)
    y = np.eye(4, dtype=dtype)[[0, 3, 1]]
    _compare(cuda, "softmax_cross_entropy", (z * 1000, y), dtype)  # extreme logits stay finite
    _compare(cuda, "count_correct", (z, y), dtype)
    _compare(cuda, "count_correct", (z[:, :1], y[:, :1], 0.0), dtype)
    p, g, m = (rng.standard_normal(7).astype(dtype) for _ in range(3))
    v = rng.random(7).astype(dtype)
    for update, state, args in (("adam_update", (m, v), (0.01, 0.9, 0.999, 1e-7)),
                                ("sgd_update", (m,), (0.1, 0.9)),
                                ("sgd_update", (None,), (0.1, 0.0))):
        ref = [a.copy() if a is not None else None for a in (p, g, *state)]
        dev = [cuda.to_device(a) if a is not None else None for a in ref]
        getattr(numpy_ref, update)(*ref, *args)
        getattr(cuda, update)(*dev, *args)
        for r, d in zip(ref, dev):
            if r is not None:
                _close(cuda.to_host(d), r, dtype)


@pytest.mark.parametrize("make, shape", [
    (lambda: Conv2D(2, (2, 2), strides=2, padding="same", activation="relu"), (1, 3, 3, 2)),
    (lambda: MaxPool2D((2, 2), strides=1), (1, 3, 3, 1)),
    (lambda: Dense(3, activation="sigmoid"), (2, 3)),
])
def test_gradients_float64(cuda, float64, make, shape):
    x = np.random.default_rng(4).standard_normal(shape)
    errors = check_layer(make(), x)
    assert max(errors.values()) < 1e-6, errors


def test_training_steps_match_reference(float64):
    from minicnn import Sequential
    from minicnn.layers import Flatten
    x = np.random.default_rng(5).random((4, 5, 5, 1))
    y = np.array([0, 1, 2, 1])
    weights = {}
    for name in ("numpy", "cuda"):
        with minicnn.use_backend(name):
            model = Sequential([Conv2D(2, (2, 2), activation="relu", input_shape=(5, 5, 1)),
                                MaxPool2D((2, 2)), Flatten(), Dense(3, activation="softmax")])
            model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
            history = model.fit(x, y, batch_size=2, epochs=2, seed=0, verbose=0)
            weights[name] = model.get_weights() + [np.array(history.history["loss"])]
    for ref, got in zip(weights["numpy"], weights["cuda"]):
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)
