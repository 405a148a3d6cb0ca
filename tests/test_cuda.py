"""The CUDA backend on small shapes, fast enough for Numba's simulator (CI runs this file with
NUMBA_ENABLE_CUDASIM=1). On a machine with a GPU, the CUDA backend also joins every
parametrised test in test_gradcheck.py and test_equivalence.py."""

import numpy as np
import pytest

import minicnn
from minicnn.gradcheck import check_layer
from minicnn.layers import Conv2D, Dense, MaxPool2D
from tests import test_equivalence as equivalence

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
    equivalence.test_dense_activation_loss_and_optimizer_kernels(cuda, dtype)


def test_softmax_cross_entropy_stays_finite_for_extreme_logits(cuda):
    z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[[1, 2]]
    loss, grad = cuda.softmax_cross_entropy(cuda.to_device(z), cuda.to_device(y))
    assert loss == pytest.approx(1e4) and np.all(np.isfinite(cuda.to_host(grad)))


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
