"""Bad input gets a clear error before any work is done, and nothing the user had is lost."""

import numpy as np
import pytest

import minicnn
from minicnn import Sequential, load_model
from minicnn.layers import Conv2D, Dense, Flatten, MaxPool2D
from minicnn.optimizers import SGD, Adam


def small_cnn():
    model = Sequential([Conv2D(2, (3, 3), activation="relu", input_shape=(8, 8, 1)),
                        Flatten(), Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    return model


X = np.random.default_rng(0).random((6, 8, 8, 1)).astype(np.float32)
Y = np.array([0, 1, 2, 0, 1, 2])


@pytest.mark.parametrize("x, y, message", [
    (X[..., 0], Y, "channel axis is missing"),
    (X[:, :7], Y, r"expected \(N, 8, 8, 1\)"),
    (X, Y[:5], "different lengths"),
    (X, np.array([0, 1, 2, 3, 0, 1]), r"labels must lie in \[0, 3\)"),
    (X, np.array([0, -1, 2, 0, 1, 2]), r"labels must lie in \[0, 3\)"),
    (X, Y + 0.5, "whole numbers"),
    (np.where(np.arange(6)[:, None, None, None] == 2, np.nan, X), Y, "NaN or inf"),
    (np.full_like(X, np.inf), Y, "NaN or inf"),
])
def test_fit_rejects_bad_data_and_keeps_the_weights(x, y, message):
    model = small_cnn()
    model.build(seed=0)
    before = model.get_weights()
    with pytest.raises(ValueError, match=message):
        model.fit(x, y, epochs=1, verbose=0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_non_numeric_input_is_a_type_error():
    with pytest.raises(TypeError, match="numbers"):
        small_cnn().predict(np.array([["a"] * 64] * 2).reshape(2, 8, 8, 1))


@pytest.mark.parametrize("make, message", [
    (lambda: Conv2D(0, 3), "filters must be a positive int"),
    (lambda: Conv2D(4, (3, -1)), "kernel_size"),
    (lambda: Conv2D(4, 3, padding="full"), "padding must be 'valid' or 'same'"),
    (lambda: Conv2D(4, 3, activation="mish"), "unknown activation 'mish'"),
    (lambda: Dense(-2), "units must be a positive int"),
    (lambda: MaxPool2D((0, 2)), "pool_size"),
    (lambda: SGD(learning_rate=-1), "learning_rate"),
    (lambda: SGD(momentum=1.5), "momentum"),
    (lambda: Adam(beta_1=1.0), "beta_1"),
])
def test_bad_layer_and_optimizer_options(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_unknown_layer_option_is_named():
    with pytest.raises(TypeError, match="dilation_rate"):
        Conv2D(3, 3, dilation_rate=2)
    with pytest.raises(ValueError, match="unknown initializer 'orthogonal'"):
        Dense(3, kernel_initializer="orthogonal")


@pytest.mark.parametrize("kwargs, message", [
    ({"optimizer": "adagrad"}, "unknown optimizer 'adagrad'"),
    ({"loss": "hinge"}, "unknown loss 'hinge'"),
    ({"metrics": ["auc"]}, "unknown metric"),
])
def test_bad_compile_arguments(kwargs, message):
    args = {"optimizer": "adam", "loss": "sparse_categorical_crossentropy", **kwargs}
    with pytest.raises(ValueError, match=message):
        small_cnn().compile(**args)


def test_kernel_larger_than_input():
    with pytest.raises(ValueError, match="larger than its input"):
        Sequential([Conv2D(2, (5, 5), input_shape=(4, 4, 1))])  # built at once, as Keras'
    model = Sequential([Conv2D(2, (5, 5))])  # no input shape: found when it gets one
    with pytest.raises(ValueError, match="larger than its input"):
        model.build((None, 4, 4, 1))


def test_dense_on_images_asks_for_flatten():
    with pytest.raises(ValueError, match="add Flatten"):
        Sequential([Dense(3, input_shape=(4, 4, 1))]).build()


def test_first_layer_needs_input_shape():
    with pytest.raises(ValueError, match="input_shape"):
        Sequential([Dense(3)]).build()


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 0}, "epochs must be a positive int"),
    ({"batch_size": 0}, "batch_size must be a positive int"),
    ({"verbose": 3}, "verbose must be 0, 1 or 2"),
    ({"validation_split": 1.5}, "validation_split"),
])
def test_bad_fit_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        small_cnn().fit(X, Y, **kwargs)


def test_fit_before_compile():
    with pytest.raises(RuntimeError, match="compile"):
        Sequential([Dense(2, input_shape=(3,))]).fit(np.ones((2, 3)), np.array([0, 1]))


def test_unknown_and_missing_backends():
    with pytest.raises(ValueError, match="unknown backend 'tensorflow'"):
        minicnn.set_backend("tensorflow")
    if "cuda" not in minicnn.available_backends():
        with pytest.raises(RuntimeError, match="not available"):
            minicnn.set_backend("cuda")


def test_set_weights_checks_shapes_and_changes_nothing_on_error():
    model = small_cnn()
    model.build(seed=0)
    before = model.get_weights()
    bad = [w.copy() for w in before]
    bad[-1] = np.zeros(7)
    with pytest.raises(ValueError, match="shape"):
        model.set_weights(bad)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_model_file(tmp_path, damage):
    path = tmp_path / "m.npz"
    small_cnn().save(path)
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not a model" * 50,
                      "empty": b""}[damage])
    with pytest.raises(ValueError, match="corrupt, truncated or not a minicnn model"):
        load_model(path)


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    model = small_cnn()
    model.save(path)
    original = path.read_bytes()

    def broken_savez(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


def test_set_floatx_rejects_other_types():
    with pytest.raises(ValueError, match="float32"):
        minicnn.set_floatx("float16")
