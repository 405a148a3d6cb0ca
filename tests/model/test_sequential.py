"""Sequential end to end: structure, learning, stability, determinism."""

import warnings

import numpy as np
import pytest

import minicnn
from minicnn import Sequential, fusion
from minicnn.backends import load
from minicnn.datasets import load_xor
from minicnn.layers import Conv2D, Dense, Flatten, MaxPool2D
from minicnn.optimizers import SGD, Adam
from minicnn.zoo import cnn_a, cnn_b, mlp
from tests.helpers import synthetic_images

numpy_ref = load("numpy")


@pytest.mark.parametrize("make, count", [(mlp, 203_530), (cnn_a, 302_026), (cnn_b, 167_114)])
def test_parameter_counts_match_keras(make, count):
    model = make()
    assert model.count_params() == count
    lines = []
    model.summary(print_fn=lines.append)
    assert f"Total params: {count:,}" in lines
    model.build(seed=0)
    assert sum(w.size for w in model.get_weights()) == count


def test_summary_shows_output_shapes():
    lines = []
    cnn_b().summary(print_fn=lines.append)
    text = "\n".join(lines)
    for shape in ("(None, 26, 26, 32)", "(None, 13, 13, 32)", "(None, 3, 3, 128)", "(None, 1152)"):
        assert shape in text
    assert "73,856" in text


def test_same_padding_output_shape_follows_tensorflow():
    model = Sequential([Conv2D(4, 3, strides=2, padding="same", input_shape=(7, 8, 2))])
    assert model.output_shape == (4, 4, 4)


def test_xor_is_learned(backend):
    x, y = load_xor()
    model = Sequential([Dense(8, activation="sigmoid", input_shape=(2,)),
                        Dense(1, activation="sigmoid")])
    model.compile(Adam(0.05), "binary_crossentropy", ["accuracy"])
    model.fit(x, y, batch_size=4, epochs=400, verbose=0, seed=0)
    assert model.evaluate(x, y)[1] == 1.0
    np.testing.assert_array_equal(model.predict(x)[:, 0] > 0.5, y == 1)


@pytest.mark.parametrize("optimizer", [Adam(0.01), SGD(0.1, momentum=0.9)])
def test_small_cnn_learns_synthetic_images(backend, optimizer):
    x, y = synthetic_images(240, 8)
    model = Sequential([Conv2D(4, (3, 3), activation="relu", input_shape=(8, 8, 1)),
                        MaxPool2D((2, 2)), Flatten(), Dense(4, activation="softmax")])
    model.compile(optimizer, "sparse_categorical_crossentropy", ["accuracy"])
    history = model.fit(x[:200], y[:200], batch_size=20, epochs=15, verbose=0, seed=1,
                        validation_data=(x[200:], y[200:]))
    assert history.history["loss"][-1] < history.history["loss"][0] / 3
    assert history.history["val_accuracy"][-1] >= 0.95


@pytest.mark.parametrize("kernel", ["softmax_cross_entropy", "sigmoid_binary_cross_entropy"])
def test_losses_stay_finite_for_extreme_logits(kernel):
    # row three: two logits whose difference is past float32's largest number
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [3e38, -3e38, 0.0]], dtype=np.float32)
    y = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows, grad = getattr(numpy_ref, kernel)(logits, y)
    assert np.all(np.isfinite(rows)) and np.all(np.isfinite(grad))
    if kernel == "softmax_cross_entropy":
        np.testing.assert_allclose(rows, [2e4, 0, 0], atol=1e-6)  # row one costs 2e4


def test_extreme_logits_train_without_warnings(backend):
    model = Sequential([Dense(3, activation="softmax", input_shape=(2,))])
    model.compile(SGD(0.1), "sparse_categorical_crossentropy", ["accuracy"])
    model.build(seed=0)
    model.layers[0].set_weights([np.array([[1e4, -1e4, 0], [0, 0, 0]]), np.zeros(3)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = model.fit(np.array([[1.0, 0.0]]), np.array([1]), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def _train(seed, backend_name):
    with minicnn.use_backend(backend_name):
        x, y = synthetic_images(64, 8)
        model = Sequential([Conv2D(3, (3, 3), activation="relu", input_shape=(8, 8, 1)),
                            Flatten(), Dense(4, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
        model.fit(x, y, batch_size=16, epochs=2, verbose=0, seed=seed)
        return model.get_weights()


def test_same_seed_same_weights(backend):
    first, second, other = _train(5, backend), _train(5, backend), _train(6, backend)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, c) for a, c in zip(first, other))


def test_fit_does_not_modify_callers_arrays():
    x, y = synthetic_images(40, 8)
    x = x.astype(np.float32)
    x_before, y_before = x.copy(), y.copy()
    model = Sequential([Flatten(input_shape=(8, 8, 1)), Dense(4, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, epochs=2, verbose=0, validation_split=0.25)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(y, y_before)


def test_predict_rows_sum_to_one_and_evaluate_returns_loss_and_accuracy():
    x, y = synthetic_images(50, 8)
    model = Sequential([Flatten(input_shape=(8, 8, 1)), Dense(4, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    probs = model.predict(x, batch_size=7)
    assert probs.shape == (50, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    loss, acc = model.evaluate(x, y)
    assert loss > 0 and 0 <= acc <= 1


def test_fit_prints_keras_style_progress(capsys):
    x, y = synthetic_images(40, 8)
    model = Sequential([Flatten(input_shape=(8, 8, 1)), Dense(4, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, batch_size=10, epochs=2, verbose=2, validation_data=(x, y))
    out = capsys.readouterr().out
    assert "Epoch 2/2" in out
    assert "4/4 - " in out and "ms/step - loss: " in out and "val_accuracy: " in out
    model.fit(x, y, batch_size=10, epochs=1, verbose=1)
    assert "4/4 [==============================]" in capsys.readouterr().out


def test_float64_mode_computes_in_float64(float64):
    model = Sequential([Dense(2, input_shape=(3,))])
    model.build(seed=0)
    assert model.get_weights()[0].dtype == np.float64
    assert model.predict(np.ones((1, 3))).dtype == np.float64


def test_a_conv_and_the_max_pool_after_it_run_as_one_stage():
    """Conv2D (ReLU or no activation) + MaxPool2D with pool-sized 'valid' windows: one stage;
    overlapping or padded windows, or another activation, keep the layers apart."""
    model = cnn_b()
    stages, inputs, trains, _ = fusion.plan(fusion.chain(model.layers), fuse=True,
                                            fuse_loss=True)
    assert all(trains) and not stages[0].need_dx and stages[1].need_dx  # the first: no dx
    assert inputs == list(range(len(stages)))  # a chain: each stage reads the one before
    assert [tuple(model.layers.index(l) for l in fusion.layers_of(s)) for s in stages] == [
        (0, 1), (2, 3), (4,), (5,), (6,), (7,)]
    assert [type(s).__name__ for s in stages] == [
        "ConvPool", "ConvPool", "ProductReLU", "Flatten", "ProductReLU", "Logits"]
    # the textbook path: every layer on its own, the softmax still inside the loss kernel
    stages = fusion.plan(fusion.chain(model.layers), fuse=False, fuse_loss=True).stages
    assert stages[:-1] == model.layers[:-1] and type(stages[-1]).__name__ == "Logits"
    apart = Sequential([
        Conv2D(2, 3, activation="relu", input_shape=(9, 9, 1)), MaxPool2D(2, strides=1),
        Conv2D(2, 3, activation="sigmoid"), MaxPool2D(2),
        Conv2D(2, 1), MaxPool2D(2, padding="same"), Flatten()])
    stages = fusion.plan(fusion.chain(apart.layers), fuse=True, fuse_loss=False).stages
    assert [tuple(apart.layers.index(l) for l in fusion.layers_of(s)) for s in stages] == [
        (i,) for i in range(7)]


def test_a_fused_stage_predicts_what_its_layers_compute_one_by_one(backend):
    model = Sequential([Conv2D(4, 3, activation="relu", input_shape=(11, 10, 1)), MaxPool2D(2),
                        Flatten(), Dense(3)])
    x = np.random.default_rng(0).random((5, 11, 10, 1), dtype=np.float32)
    got = model.predict(x, verbose=0)
    step = minicnn.backends.get_backend().to_device(x)
    for layer in model.layers:
        step = layer.forward(step)
    np.testing.assert_allclose(got, minicnn.backends.to_numpy(step), rtol=1e-5, atol=1e-6)


def test_a_deep_copy_is_a_model_of_its_own():
    """copy.deepcopy(model): its own layers, weights, optimizer state and lock; both train on
    to the same weights from the same seed, each changing only itself."""
    import copy
    model = Sequential([Dense(4, activation="relu", input_shape=(3,)),
                        Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = np.random.default_rng(0).random((8, 3)), np.arange(8) % 2
    model.fit(x, y, verbose=0, seed=0)
    clone = copy.deepcopy(model)
    assert all(a is not b for a, b in zip(model.layers, clone.layers))
    assert all(set(layer.models) == {clone} for layer in clone.layers)
    assert clone.optimizer is not model.optimizer
    clone.fit(x, y, verbose=0, seed=1)
    model.fit(x, y, verbose=0, seed=1)
    for a, b in zip(model.get_weights(), clone.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_model_named_none_is_named_as_keras_does(tmp_path):
    model = Sequential([Dense(2, input_shape=(3,))], name=None)
    assert model.name == "sequential"
    model.compile("sgd", "mse")
    model.save(tmp_path / "m.npz")  # a name the file can hold
    with pytest.raises(TypeError, match="name must be a string"):
        Sequential(name=3)
