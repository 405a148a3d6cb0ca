"""Central-difference gradient checks in float64 for every layer on every backend."""

import numpy as np
import pytest

from minicnn import Sequential
from minicnn.gradcheck import check_layer, check_model, relative_error
from minicnn.layers import Activation, Conv2D, Dense, Flatten, MaxPool2D, ReLU, Sigmoid, Softmax

TOL = 1e-6

IMAGE_LAYERS = [
    lambda: Conv2D(3, (3, 3)),
    lambda: Conv2D(4, (2, 3), strides=2, activation="relu"),
    lambda: Conv2D(2, (3, 3), padding="same", activation="sigmoid"),
    lambda: Conv2D(3, (4, 2), strides=(2, 1), padding="same"),
    lambda: Conv2D(2, 1),
    lambda: MaxPool2D((2, 2)),
    lambda: MaxPool2D((3, 3), strides=2),
    lambda: MaxPool2D((2, 3), strides=1),
    lambda: Flatten(),
    lambda: ReLU(),
    lambda: Sigmoid(),
]
FLAT_LAYERS = [
    lambda: Dense(5),
    lambda: Dense(4, activation="relu"),
    lambda: Dense(3, activation="sigmoid"),
    lambda: Dense(6, activation="softmax"),
    lambda: Softmax(),
    lambda: Activation("sigmoid"),
]


@pytest.mark.parametrize("make", IMAGE_LAYERS)
@pytest.mark.parametrize("shape", [(2, 7, 5, 3), (1, 6, 6, 1)])
def test_image_layer_gradients(backend, float64, make, shape):
    x = np.random.default_rng(0).standard_normal(shape)
    errors = check_layer(make(), x)
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("make", FLAT_LAYERS)
def test_flat_layer_gradients(backend, float64, make):
    x = np.random.default_rng(1).standard_normal((3, 7))
    errors = check_layer(make(), x)
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("loss, last", [
    ("sparse_categorical_crossentropy", "softmax"),
    ("categorical_crossentropy", "softmax"),
    ("mse", None),
    ("binary_crossentropy", "sigmoid"),
])
def test_whole_model_loss_gradient(backend, float64, loss, last):
    rng = np.random.default_rng(2)
    units = 1 if loss == "binary_crossentropy" else 3
    model = Sequential([
        Conv2D(2, (3, 3), padding="same", activation="relu", input_shape=(6, 5, 2)),
        MaxPool2D((2, 2)),
        Conv2D(3, (2, 2), strides=1, activation="sigmoid"),
        Flatten(),
        Dense(4, activation="relu"),
        Dense(units, activation=last),
    ])
    model.compile("sgd", loss)
    x = rng.standard_normal((4, 6, 5, 2))
    labels = rng.integers(0, units if units > 1 else 2, 4)
    y = {"sparse_categorical_crossentropy": labels,
         "categorical_crossentropy": np.eye(3)[labels],
         "mse": rng.standard_normal((4, 3)),
         "binary_crossentropy": labels}[loss]
    assert check_model(model, x, y) < TOL


def test_unfused_probability_cross_entropy_gradient(float64):
    """A softmax *layer* followed by a loss that sees probabilities is still exact."""
    rng = np.random.default_rng(3)
    model = Sequential([Dense(3, input_shape=(4,)), Softmax(), Activation("linear")])
    model.compile("sgd", "categorical_crossentropy")
    assert check_model(model, rng.standard_normal((5, 4)), np.eye(3)[rng.integers(0, 3, 5)]) < TOL


def test_relative_error_detects_a_wrong_gradient():
    assert relative_error(np.ones(3), np.ones(3)) == 0
    assert relative_error(np.ones(3), 1.01 * np.ones(3)) > 1e-3
