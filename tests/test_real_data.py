"""Learning on the real Fashion-MNIST files (marked slow: CI runs them with -m slow)."""

import numpy as np
import pytest

from minicnn import Sequential
from minicnn.classic import NNClassifier
from minicnn.datasets import load_fashion_mnist, to_float_images
from minicnn.layers import Conv2D, Dense, Flatten, MaxPool2D
from tests.helpers import load_example

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data():
    return load_fashion_mnist()


def test_small_cnn_learns_real_images(data):
    (x, y), (xt, yt) = data
    model = Sequential([Conv2D(8, (3, 3), activation="relu", input_shape=(28, 28, 1)),
                        MaxPool2D((2, 2)), Flatten(), Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(to_float_images(x[:6000]), y[:6000], batch_size=32, epochs=1, seed=0, verbose=0)
    assert model.evaluate(to_float_images(xt[:2000]), yt[:2000])[1] > 0.75


def test_scratch_mlp_learns_standardised_pixels(data):
    (x, y), (xt, yt) = data
    X = x[:3000].reshape(3000, -1).astype(np.float64)
    mean, std = X.mean(axis=0), X.std(axis=0) + 1e-8
    nn = NNClassifier(10, 784, n_hidden_units=50, l2=0.5, epochs=20, learning_rate=0.001,
                      n_batches=25, random_seed=1).fit((X - mean) / std, y[:3000])
    Xt = (xt[:2000].reshape(2000, -1) - mean) / std
    assert nn.score(Xt, yt[:2000]) > 0.7


def test_main_example_on_real_data(tmp_path):
    """The README's main job, shortened: real data, every figure written."""
    accuracy = load_example("train_cnn").main(["--epochs", "1", "--limit", "4000", "--out",
                                       str(tmp_path), "--verbose", "0"])
    assert accuracy > 0.6  # chance is 0.1; one short epoch
    for figure in ("history", "prediction", "confusion", "samples", "filters"):
        assert (tmp_path / f"cnn_b_{figure}.png").stat().st_size > 10_000
