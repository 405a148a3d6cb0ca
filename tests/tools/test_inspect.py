"""Looking inside a model: feature maps are the layers' outputs, saliency is the class
score's gradient (checked by central differences on every backend), and the figures draw."""

import numpy as np
import pytest

import minicnn
from minicnn import Sequential, inspect, plotting
from minicnn.fusion import layers_of
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
    for layer in model.layers[:-1]:
        out = layer.forward(out, training=False)
    out = model.layers[-1].forward(out, training=False, activate=False)
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
    assert [m.shape[1:] for m in maps.values()] == [s[1] for s in model.layer_shapes()]
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


def test_layer_stats_record_the_training_step_not_a_callbacks_predict():
    """A callback that predicts before LayerStats sees the step: the records are those of
    the training step, the same as without that callback."""
    from minicnn.callbacks import Callback, LayerStats

    class Peek(Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.model.predict(np.zeros((3, 7, 6, 2)))

    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((12, 7, 6, 2)), rng.integers(0, 4, 12)
    records = []
    for callbacks in ([], [Peek()]):
        stats = LayerStats(every=1)
        _small_cnn().fit(x, y, batch_size=4, epochs=1, verbose=0, seed=0,
                         callbacks=[*callbacks, stats])
        records.append(stats.records)
    assert len(records[0]) == len(records[1]) > 0
    for a, b in zip(*records):
        assert (a["layer"], a["mean"], a["std"]) == (b["layer"], b["mean"], b["std"])


def test_layer_stats_are_numpys_on_the_recorded_arrays(backend, tmp_path):
    from minicnn.callbacks import LayerStats
    model = _small_cnn()
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((12, 7, 6, 2)), rng.integers(0, 4, 12)
    stats = LayerStats(every=2, bins=10, value_range=(-2, 2), path=tmp_path / "s" / "stats.csv")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, seed=0, callbacks=[stats])
    steps = sorted({r["step"] for r in stats.records})
    assert steps == [0, 2]
    last = {(r["layer"], r["kind"]): r for r in stats.records if r["step"] == 2}
    backend_ = minicnn.get_backend()
    for stage, output in zip(model.stages(), model.stage_outputs):  # the last step's
        name = "+".join(layer.name for layer in layers_of(stage))
        values = np.asarray(backend_.to_host(output), dtype=np.float64).ravel()
        record = last[(name, "activation")]
        assert record["mean"] == pytest.approx(values.mean())
        assert record["std"] == pytest.approx(values.std())
        assert record["zeros"] == pytest.approx(np.mean(values == 0))
        counts = np.histogram(np.clip(values, -2, 2), bins=np.linspace(-2, 2, 11))[0]
        np.testing.assert_array_equal(record["histogram"], counts)
        assert record["histogram"].sum() == values.size
    kernel = np.asarray(backend_.to_host(model.layers[-1].grads["kernel"]), dtype=np.float64)
    bias = np.asarray(backend_.to_host(model.layers[-1].grads["bias"]), dtype=np.float64)
    gradient = last[("dense_1", "gradient")]
    assert gradient["std"] == pytest.approx(np.concatenate([kernel.ravel(), bias]).std())
    lines = (tmp_path / "s" / "stats.csv").read_text().splitlines()
    assert lines[0].startswith("step,layer,kind,mean,std,zeros,bin_0")
    assert len(lines) == 1 + len(stats.records)
    plotting.plot_layer_stats(stats, path=tmp_path / "stats.png")
    with pytest.raises(ValueError, match="every must be"):
        LayerStats(every=0)


def test_profile_flops_are_hand_counts_and_the_rows_add_up(backend, monkeypatch):
    from minicnn.layers import AveragePooling2D
    n = 8
    assert inspect.layer_flops(Dense(5), (3,), (5,), n) == 3 * 2 * n * 3 * 5
    conv = Conv2D(4, (3, 2))
    outputs, taps = n * 4 * 4 * 4, 3 * 2 * 2
    assert inspect.layer_flops(conv, (6, 5, 2), (4, 4, 4), n) == 3 * 2 * outputs * taps
    pool = MaxPool2D((2, 3))
    assert inspect.layer_flops(pool, (6, 6, 3), (3, 2, 3), n) == n * 18 * 6 + n * 18
    assert inspect.layer_flops(AveragePooling2D(2), (4, 4, 1), (2, 2, 1), n) == n * 4 * 4 + n * 4
    model = _small_cnn()
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((n, 7, 6, 2)), rng.integers(0, 4, n)
    model.fit(x, y, epochs=1, verbose=0, seed=0)  # an optimizer state to keep
    before = model.get_weights()
    state = {k: np.array(minicnn.backends.to_numpy(v))  # copies: the steps update the live ones
             for k, v in model.optimizer.state_arrays().items()}
    iterations = model.optimizer.iterations
    import itertools
    import time
    ticks = itertools.count()  # a clock that moves one unit a reading: every step alike
    monkeypatch.setattr(time, "perf_counter", lambda: float(next(ticks)))
    rows = model.profile(x, y, steps=8)
    monkeypatch.undo()
    for a, b in zip(before, model.get_weights()):  # profiling trains nothing
        np.testing.assert_array_equal(a, b)
    after = model.optimizer.state_arrays()
    assert model.optimizer.iterations == iterations and set(after) == set(state)
    for key in state:
        np.testing.assert_array_equal(minicnn.backends.to_numpy(after[key]), state[key])
    model.fit(x, y, epochs=1, verbose=0)  # and training goes on from there
    assert [r["layer"] for r in rows][-3:] == ["loss", "optimizer", "outside the layers"]
    first = layers_of(model.stages()[0])  # fused on the fast backends, alone on numpy
    assert rows[0]["layer"] == ("conv2d" if minicnn.get_backend().name == "numpy"
                                else "conv2d+max_pool2d")
    shapes = model.layer_shapes()
    assert rows[0]["flops"] == sum(inspect.layer_flops(model.layers[i], *shapes[i], n)
                                   for i in range(len(first)))
    total = sum(r["forward_s"] + r["backward_s"] for r in rows)
    assert total == pytest.approx(rows[0]["step_s"])  # equal steps: the medians add up
    assert all(r["forward_s"] > 0 for r in rows if r["layer"] != "outside the layers")
    inspect.print_profile(rows)
    plotting.plot_profile(rows)


def test_profiling_changes_nothing_the_next_fit_sees(backend):
    """Weights, Adam's m and v, the step count and a seeded Dropout's generator: all as
    they were, so fit after profile trains exactly as fit without it."""
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((16, 6, 6, 1)), rng.integers(0, 3, 16)

    def train(profile_between: bool):
        model = Sequential([Flatten(input_shape=(6, 6, 1)), Dense(8, activation="relu"),
                            Dropout(0.5, seed=1), Dense(3, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=0)
        if profile_between:
            model.profile(x, y, steps=2)
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=1)
        return model.get_weights()

    for a, b in zip(train(False), train(True)):
        np.testing.assert_array_equal(a, b)


def test_an_embedding_is_a_layers_outputs_flattened(backend):
    """What the last layer reads by default (the penultimate representation), or any
    layer by its feature_maps name, a row per image; in batches or not, the same rows."""
    model = _small_cnn()
    x = np.random.default_rng(5).standard_normal((5, 7, 6, 2)).astype(np.float32)
    maps = inspect.feature_maps(model, x)
    np.testing.assert_allclose(inspect.embedding(model, x), maps["dense"], rtol=1e-6)
    pooled = inspect.embedding(model, x, layer="max_pool2d", batch_size=2)
    assert pooled.shape == (5, 3 * 2 * 3) and pooled.dtype == np.float64
    np.testing.assert_allclose(pooled, maps["max_pool2d"].reshape(5, -1), rtol=1e-6)
    with pytest.raises(ValueError, match="no layer 'dense_7' in this model; its layers are"):
        inspect.embedding(model, x, layer="dense_7")


def test_an_embedding_names_a_shared_layers_later_call():
    x_in = minicnn.layers.Input((4,))
    twice = Dense(4, activation="tanh")
    model = minicnn.Model(x_in, Dense(2, activation="softmax")(twice(twice(x_in))))
    x = np.random.default_rng(6).standard_normal((3, 4)).astype(np.float32)
    maps = inspect.feature_maps(model, x)
    assert list(maps) == [twice.name, f"{twice.name}[1]", model.layers[-1].name]
    np.testing.assert_allclose(inspect.embedding(model, x, layer=f"{twice.name}[1]"),
                               maps[f"{twice.name}[1]"], rtol=1e-6)
    np.testing.assert_allclose(inspect.embedding(model, x), maps[f"{twice.name}[1]"],
                               rtol=1e-6)


def test_pca_projects_onto_the_directions_of_largest_variance():
    rng = np.random.default_rng(7)
    points = rng.standard_normal((200, 3)) * [5.0, 2.0, 0.1] @ np.linalg.qr(
        rng.standard_normal((3, 3)))[0]
    xy = inspect.project(points, "pca")
    centred = points - points.mean(axis=0)
    _, vectors = np.linalg.eigh(np.cov(centred.T))  # ascending eigenvalues
    for k in range(2):
        expected = centred @ vectors[:, -1 - k]
        assert abs(abs(np.corrcoef(xy[:, k], expected)[0, 1]) - 1) < 1e-9
    assert xy[:, 0].var() > xy[:, 1].var()
    np.testing.assert_allclose(np.cov(xy.T)[0, 1], 0, atol=1e-9)


def test_tsne_keeps_clusters_apart_and_its_seed_fixes_the_map():
    rng = np.random.default_rng(8)
    labels = np.repeat([0, 1, 2], 30)
    points = rng.standard_normal((90, 60)) + 12 * np.eye(3, 60)[labels]
    xy = inspect.project(points, "tsne", seed=1)
    assert xy.shape == (90, 2)
    distances = np.linalg.norm(xy[:, None] - xy[None], axis=2) + np.diag(np.full(90, np.inf))
    assert (labels[distances.argmin(axis=1)] == labels).all()  # nearest neighbour: same class
    np.testing.assert_array_equal(inspect.project(points, "tsne", seed=1), xy)


@pytest.mark.parametrize("points, method, message", [
    (np.zeros((5,)), "pca", r"points must be \(N, D\) with N >= 3 rows, got shape \(5,\)"),
    (np.zeros((2, 4)), "pca", r"N >= 3 rows, got shape \(2, 4\)"),
    (np.full((4, 2), np.nan), "tsne", "points contain NaN or inf"),
    (np.zeros((4, 2)), "umap", "method must be 'tsne' or 'pca', got 'umap'"),
])
def test_a_projection_of_bad_points_is_a_clear_error(points, method, message):
    with pytest.raises(ValueError, match=message):
        inspect.project(points, method)
