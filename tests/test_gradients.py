"""Central-difference gradient checks in float64 for every layer on every backend."""

import numpy as np
import pytest

from minicnn import Sequential
from minicnn.gradcheck import check_layer, check_model, relative_error
from minicnn.layers import (
    Activation,
    AveragePooling2D,
    BatchNormalization,
    Conv2D,
    Dense,
    Flatten,
    GlobalAveragePooling2D,
    MaxPool2D,
    ReLU,
    Sigmoid,
    Softmax,
)

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
    lambda: MaxPool2D((2, 2), padding="same"),
    lambda: MaxPool2D((3, 2), strides=(2, 1), padding="same"),
    lambda: AveragePooling2D((2, 2)),
    lambda: AveragePooling2D((3, 3), strides=2, padding="same"),
    lambda: AveragePooling2D((2, 3), strides=1),
    lambda: GlobalAveragePooling2D(),
    lambda: Conv2D(3, (2, 2), use_bias=False, kernel_regularizer="l2"),
]
FLAT_LAYERS = [
    lambda: Dense(5),
    lambda: Dense(4, activation="relu"),
    lambda: Dense(3, activation="sigmoid"),
    lambda: Dense(6, activation="softmax"),
    lambda: Softmax(),
    lambda: Activation("sigmoid"),
    lambda: Dense(4, activation="tanh"),
    lambda: Dense(4, activation="elu"),
    lambda: Dense(4, activation="leaky_relu"),
    lambda: Dense(4, activation="silu"),
    lambda: Dense(4, activation="swish"),
    lambda: Dense(4, activation="gelu"),
    lambda: Dense(3, use_bias=False),
]


@pytest.mark.parametrize("make", IMAGE_LAYERS)
@pytest.mark.parametrize("shape", [(2, 7, 5, 3), (1, 6, 6, 1)])
def test_image_layer_gradients(backend, float64, make, shape):
    x = np.random.default_rng(0).standard_normal(shape)
    errors = check_layer(make(), x)
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("padding, shape", [("same", (2, 9, 8, 3)), ("valid", (1, 11, 12, 2))])
def test_winograd_conv_gradients(backend, float64, padding, shape):
    """3x3 stride-1 convolutions with outputs of 8 or more pixels a side: the compiled
    backends' Winograd path (its backward runs every transform transposed)."""
    x = np.random.default_rng(6).standard_normal(shape)
    errors = check_layer(Conv2D(4, (3, 3), padding=padding, activation="relu"), x)
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


@pytest.mark.parametrize("activation, pool, shape", [
    ("relu", (2, 2), (3, 8, 7, 1)),  # one channel: the compiled backends' fused kernels
    (None, (2, 3), (2, 9, 8, 1)),
    ("relu", (3, 3), (2, 7, 8, 2)),  # several: the conv, then the pooling kernel
])
def test_conv_then_max_pool_stage_gradient(backend, float64, activation, pool, shape):
    """A Conv2D and the MaxPool2D after it run as one stage (one kernel pair)."""
    rng = np.random.default_rng(7)
    model = Sequential([
        Conv2D(3, (2, 2), activation=activation, input_shape=shape[1:]), MaxPool2D(pool),
        Conv2D(2, (2, 2), padding="same", activation="relu"), MaxPool2D((2, 2)),
        Flatten(), Dense(3, activation="softmax"),
    ])
    model.compile("sgd", "sparse_categorical_crossentropy", fuse=True)  # numpy too
    assert [type(s).__name__ for s in model.stages()[:2]] == ["ConvPool", "ConvPool"]
    assert check_model(model, rng.standard_normal(shape), rng.integers(0, 3, shape[0])) < TOL


def test_unfused_probability_cross_entropy_gradient(float64):
    """A softmax *layer* followed by a loss that sees probabilities is still exact."""
    rng = np.random.default_rng(3)
    model = Sequential([Dense(3, input_shape=(4,)), Softmax(), Activation("linear")])
    model.compile("sgd", "categorical_crossentropy")
    assert check_model(model, rng.standard_normal((5, 4)), np.eye(3)[rng.integers(0, 3, 5)]) < TOL


def test_relative_error_detects_a_wrong_gradient():
    assert relative_error(np.ones(3), np.ones(3)) == 0
    assert relative_error(np.ones(3), 1.01 * np.ones(3)) > 1e-3


@pytest.mark.parametrize("shape", [(2, 7, 5, 3), (1, 6, 6, 1), (3, 7)])
def test_batchnorm_gradients(backend, float64, shape):
    """BatchNorm's input gradient is small next to its output (the output is normalised),
    so eps=1e-6 central differences drown in rounding noise: 1e-4 is the honest step."""
    x = np.random.default_rng(0).standard_normal(shape)
    errors = check_layer(BatchNormalization(), x, eps=1e-4)
    assert max(errors.values()) < TOL, errors


def test_batchnorm_then_relu_stage_gradient(backend, float64):
    """A BatchNormalization and the ReLU after it run as one stage (the ReLU's mask rebuilt
    from x_hat in the backward)."""
    rng = np.random.default_rng(8)
    model = Sequential([Conv2D(3, (2, 2), use_bias=False, input_shape=(6, 5, 2)),
                        BatchNormalization(), ReLU(), Flatten(),
                        Dense(4, use_bias=False), BatchNormalization(), Activation("relu"),
                        Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy", fuse=True)  # numpy too
    assert [type(s).__name__ for s in model.stages()] == [
        "WeightGradients", "NormReLU", "Flatten", "Dense", "NormReLU", "Logits"]
    assert check_model(model, rng.standard_normal((4, 6, 5, 2)), rng.integers(0, 3, 4),
                       eps=1e-4) < TOL


def test_inference_mode_batchnorm_gradient(backend, float64):
    """With moving statistics (inference) BatchNorm is an affine map per channel."""
    layer = BatchNormalization()
    x = np.random.default_rng(4).standard_normal((3, 4, 4, 2))
    layer.build(x.shape[1:])
    layer.set_weights([np.array([1.5, 0.5]), np.array([0.1, -0.2]), np.array([0.3, -0.1]),
                       np.array([2.0, 0.5])])
    analytic_dx = layer.backward(layer.forward(x, training=False) * 0 + 1.0)
    scale = np.array([1.5, 0.5]) / np.sqrt(np.array([2.0, 0.5]) + 1e-3)
    np.testing.assert_allclose(np.asarray(analytic_dx), np.broadcast_to(scale, x.shape),
                               rtol=1e-12)


def test_regularized_model_gradient_includes_the_penalty(backend, float64):
    rng = np.random.default_rng(5)
    model = Sequential([Dense(4, activation="gelu", kernel_regularizer="l1_l2",
                              input_shape=(3,)),
                        BatchNormalization(),
                        Dense(3, activation="softmax", kernel_regularizer="l2")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    assert check_model(model, rng.standard_normal((6, 3)), rng.integers(0, 3, 6)) < TOL


def test_checks_run_in_float64_at_the_default_floatx(backend):
    """As a learner writes it, at the default float32: every backend checks in float64
    (correct gradients pass), says so, and leaves floatx and the layer's weights as they
    were (float32)."""
    import minicnn
    from minicnn.layers import Layer

    class Square(Layer):  # a learner's own layer: y = x^2
        def forward(self, x, training=False):
            self._x = x
            return x * x

        def backward(self, dy):
            return 2 * self._x * dy

    rng = np.random.default_rng(3)
    assert minicnn.floatx() == "float32"
    for layer, x in ((Dense(4, activation="tanh"), rng.standard_normal((3, 5))),
                     (Conv2D(2, 3, padding="same"), rng.standard_normal((2, 5, 5, 2))),
                     (Square(), rng.standard_normal((2, 3)))):
        errors = check_layer(layer, x.astype(np.float32))
        assert errors.precision == "float64" and "float64" in repr(errors)
        assert max(errors.values()) < 1e-6, (layer, errors)
        assert minicnn.floatx() == "float32"
        assert all(w.dtype == np.float32 for w in layer.get_weights())
    model = Sequential([Dense(3, activation="relu", input_shape=(4,)),
                        Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    assert check_model(model, rng.standard_normal((5, 4)), rng.integers(0, 2, 5)) < 1e-6
    assert minicnn.floatx() == "float32"
    assert model.predict(np.ones((1, 4))).dtype == np.float32


def test_a_wrong_custom_gradient_fails_the_check():
    from minicnn.layers import Layer

    class WrongSquare(Layer):
        def forward(self, x, training=False):
            self._x = x
            return x * x

        def backward(self, dy):
            return self._x * dy  # forgot the 2

    errors = check_layer(WrongSquare(), np.random.default_rng(0).standard_normal((2, 3)))
    assert errors["input"] > 0.1
