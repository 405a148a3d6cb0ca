"""The layers past the seeds, in Keras' meaning: Input, BatchNormalization, Dropout, pooling
paddings, use_bias, initializers and regularizers."""


import math

import numpy as np
import pytest

import minicnn
from minicnn import Sequential
from minicnn.backends import load
from minicnn.layers import (
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Input,
    MaxPool2D,
)
from tests.helpers import bn_cnn, synthetic_images

numpy_ref = load("numpy")






def test_input_gives_its_shape_to_the_first_layer():
    model = bn_cnn()
    assert model.input_shape == (8, 8, 1) and len(model.layers) == 7
    assert model.output_shape == (4,)
    with pytest.raises(ValueError, match="must come first"):
        Sequential([Dense(2, input_shape=(3,)), Input((3,))])


def test_batchnorm_follows_keras(rng):
    layer = BatchNormalization()
    x = rng.standard_normal((6, 3, 3, 2)) * 3 + 5
    layer.build(x.shape[1:])
    assert [w.shape for w in layer.get_weights()] == [(2,)] * 4  # gamma beta mean variance
    y = np.asarray(layer.forward(x.astype(np.float32), training=True))
    flat = x.reshape(-1, 2)
    np.testing.assert_allclose(y.reshape(-1, 2).mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(y.reshape(-1, 2), (flat - flat.mean(0)) /
                               np.sqrt(flat.var(0) + 1e-3), rtol=1e-4, atol=1e-5)
    assert [list(w) for w in layer.get_weights()[2:]] == [[0, 0], [1, 1]]  # not yet: ...
    layer.update_state()  # ... the moving statistics move when the step is applied
    gamma, beta, mean, var = layer.get_weights()
    np.testing.assert_allclose(mean, 0.01 * flat.mean(0), rtol=1e-5)  # momentum 0.99
    np.testing.assert_allclose(var, 0.99 + 0.01 * flat.var(0), rtol=1e-5)  # biased variance
    inference = np.asarray(layer.forward(x.astype(np.float32), training=False))
    np.testing.assert_allclose(inference, (x - mean) / np.sqrt(var + 1e-3), rtol=1e-4)


def test_summary_counts_batchnorm_statistics_as_non_trainable(capsys):
    model = bn_cnn()
    model.summary()
    out = capsys.readouterr().out
    # conv 36 (no bias) + BN 8 trainable + 8 moving + conv 148 + dense 20
    assert "Total params: 220" in out and "Trainable params: 212" in out
    assert "Non-trainable params: 8" in out


@pytest.mark.parametrize("name", ["numpy", "numba", "cython"])
def test_dropout_masks_are_reproducible_and_scaled(name):
    if name not in minicnn.available_backends():
        pytest.skip(f"{name} is not available")
    x, y = synthetic_images(32, 8)
    weights = []
    with minicnn.use_backend(name):
        for _ in range(2):
            model = bn_cnn(dropout=0.5)
            model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
            model.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=3)
            weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
    layer = Dropout(0.25, seed=0)
    out = np.asarray(layer.forward(np.ones((200, 50), np.float32), training=True))
    assert set(np.unique(out)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((out == 0).mean() - 0.25) < 0.02
    np.testing.assert_array_equal(np.asarray(layer.backward(np.ones((200, 50), np.float32))), out)
    np.testing.assert_array_equal(layer.forward(np.ones((2, 3)), training=False), np.ones((2, 3)))


def test_same_padding_pools_follow_tensorflow():
    x = np.arange(2 * 5 * 5 * 1, dtype=np.float64).reshape(2, 5, 5, 1)
    y, _ = numpy_ref.maxpool2d_forward(x, (2, 2), (2, 2), "same")
    assert y.shape == (2, 3, 3, 1) and y[0, 2, 2, 0] == x[0, 4, 4, 0]
    avg = numpy_ref.avgpool2d_forward(x, (2, 2), (2, 2), "same")
    assert avg[0, 2, 2, 0] == x[0, 4, 4, 0]  # a corner window holds one real pixel
    assert avg[0, 0, 0, 0] == x[0, :2, :2, 0].mean()
    assert MaxPool2D(3, strides=2, padding="same").compute_output_shape((7, 7, 2)) == (4, 4, 2)


def test_use_bias_false_and_initializers():
    layer = Dense(5, use_bias=False, kernel_initializer="he_uniform")
    layer.build((400,), np.random.default_rng(0))
    (kernel,) = layer.get_weights()
    limit = math.sqrt(6 / 400)
    assert kernel.shape == (400, 5) and np.abs(kernel).max() <= limit
    assert abs(kernel.std() - limit / math.sqrt(3)) < 0.01
    normal = Conv2D(64, 3, kernel_initializer="he_normal")
    normal.build((8, 8, 16), np.random.default_rng(1))
    assert abs(normal.get_weights()[0].std() - math.sqrt(2 / (9 * 16))) < 0.005


def test_regularizer_penalty_joins_the_reported_loss():
    x, y = synthetic_images(16, 8)
    losses = {}
    for reg in (None, "l2"):
        model = Sequential([Flatten(input_shape=(8, 8, 1)),
                            Dense(4, activation="softmax", kernel_regularizer=reg)])
        model.compile("sgd", "sparse_categorical_crossentropy")
        model.build(seed=0)
        losses[reg] = model.evaluate(x, y)
        if reg:
            kernel = model.get_weights()[0]
            assert losses[reg] == pytest.approx(losses[None] + 0.01 * (kernel**2).sum(), rel=1e-5)


def test_a_layer_written_for_the_old_hooks_is_refused_when_defined():
    """_forward and _backward are no longer called: a layer that defines them would be
    the identity without a word."""
    from minicnn.layers import Layer

    with pytest.raises(TypeError, match="now overrides forward"):
        class Square(Layer):
            def _forward(self, x, training):
                return x * x
