"""Looking inside a model: feature maps are the layers' outputs, saliency is the class
score's gradient (checked by central differences on every backend), and the figures draw."""

import numpy as np
import pytest

import minicnn
from minicnn import Sequential, inspect, plotting
from minicnn.gradcheck import numerical_gradient, relative_error
from minicnn.layers import BatchNormalization, Conv2D, Dense, Dropout, Flatten, MaxPool2D


def _small_cnn():
    model = Sequential([
        Conv2D(3, (2, 2), activation="relu", input_shape=(7, 6, 2)), MaxPool2D((2, 2)),
        BatchNormalization(), Dropout(0.5), Flatten(), Dense(5, activation="tanh"),
        Dense(4, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.build(seed=0)
    return model


def _scores(model, x):
    """Class scores before the softmax, the layers applied one by one in inference mode."""
    out = x
    for layer in model.layers:
        out = layer.forward(out, training=False, activate=layer is not model.layers[-1])
    return np.asarray(minicnn.get_backend().to_host(out))


def test_saliency_is_the_class_scores_gradient(backend, float64):
    model = _small_cnn()
    rng = np.random.default_rng(0)
    model.fit(rng.standard_normal((8, 7, 6, 2)), rng.integers(0, 4, 8), epochs=1, verbose=0,
              seed=0)  # moving statistics that are not the defaults
    x = rng.standard_normal((3, 7, 6, 2))
    classes = np.array([0, 3, 1])
    got = inspect.saliency(model, x, class_index=classes)
    assert got.shape == x.shape
    for n, c in enumerate(classes):
        numeric = numerical_gradient(lambda v, n=n, c=c: _scores(model, v)[n, c], x.copy())
        assert relative_error(got[n], numeric[n]) < 1e-6
    predicted = model.predict(x).argmax(axis=1)
    np.testing.assert_allclose(inspect.saliency(model, x), inspect.saliency(model, x, predicted))
    with pytest.raises(ValueError, match="class_index must be a class"):
        inspect.saliency(model, x, class_index=4)


def test_input_gradient_of_the_outputs(float64):
    model = _small_cnn()
    rng = np.random.default_rng(1)
    x, dy = rng.standard_normal((2, 7, 6, 2)), rng.standard_normal((2, 4))
    numeric = numerical_gradient(lambda v: float((model.predict(v) * dy).sum()), x.copy())
    assert relative_error(model.input_gradient(x, dy), numeric) < 1e-6
    with pytest.raises(ValueError, match="dy must have the output's shape"):
        model.input_gradient(x, dy[:, :3])


def test_feature_maps_are_every_layers_output_in_order(backend):
    model = _small_cnn()
    x = np.random.default_rng(2).standard_normal((2, 7, 6, 2)).astype(np.float32)
    maps = inspect.feature_maps(model, x)
    assert list(maps) == [layer.name for layer in model.layers]
    assert [m.shape[1:] for m in maps.values()] == [s[1] for s in model._shapes()]
    np.testing.assert_allclose(maps["dense_1"], model.predict(x), rtol=1e-5, atol=1e-6)
    conv = maps["conv2d"]
    assert (conv >= 0).all()  # after its ReLU
    np.testing.assert_allclose(maps["max_pool2d"], conv[:, :6, :4].reshape(
        2, 3, 2, 2, 2, 3).max(axis=(2, 4)), rtol=1e-6)


def test_the_figures_draw(tmp_path):
    model = _small_cnn()
    x = np.random.default_rng(3).random((4, 7, 6, 2)).astype(np.float32)
    maps = inspect.feature_maps(model, x)
    plotting.plot_feature_maps(maps, path=tmp_path / "maps.png")
    with pytest.raises(ValueError, match="no image-shaped map for layer 'dense'"):
        plotting.plot_feature_maps(maps, layer="dense")
    predicted = model.predict(x).argmax(axis=1)
    plotting.plot_saliency(x, inspect.saliency(model, x), np.array([0, 1, 2, 3]), predicted,
                           class_names=["a", "b", "c", "d"], path=tmp_path / "saliency.png")
    plotting.plot_model(model, tmp_path / "model.png")
    for name in ("maps", "saliency", "model"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
