"""The functional API: Model(inputs, outputs), merges, shared layers, the graph's backward."""

import numpy as np
import pytest

import minicnn
from minicnn import Model, Sequential, load_model
from minicnn.gradcheck import check_model, numerical_gradient, relative_error
from minicnn.layers import (
    Add,
    BatchNormalization,
    Concatenate,
    Conv2D,
    Dense,
    Flatten,
    GlobalAveragePooling2D,
    Input,
    MaxPool2D,
    ReLU,
)

TOL = 1e-6


def residual_model(norm: bool = True, shape=(6, 6, 2)) -> Model:
    """A stem, an identity block (Conv-BN-ReLU, Conv, Add, ReLU) and a projection block."""
    x = Input(shape)
    h = Conv2D(3, 3, padding="same", activation="relu")(x)
    r = Conv2D(3, 3, padding="same", use_bias=not norm)(h)
    r = ReLU()(BatchNormalization()(r) if norm else r)
    h = ReLU()(Add()([h, Conv2D(3, 3, padding="same")(r)]))
    r = Conv2D(4, 3, strides=2, padding="same", activation="relu")(h)
    h = Add()([Conv2D(4, 1, strides=2)(h), Conv2D(4, 3, padding="same")(r)])
    y = Dense(3, activation="softmax")(GlobalAveragePooling2D()(ReLU()(h)))
    return Model(x, y, name="resnet_block")


def shared_model() -> Model:
    """A Dense called twice (one set of weights, two uses) and a three-way Add of a
    tensor that feeds every input of it and a Concatenate."""
    x = Input((4,))
    twice = Dense(4, activation="tanh", kernel_regularizer="l2")
    h = twice(twice(x))
    h = Add()([h, ReLU()(h), Dense(4)(h)])
    h = Concatenate()([h, Dense(2, activation="sigmoid")(h)])
    return Model(x, Dense(3, activation="softmax")(h))


@pytest.mark.parametrize("make, shape", [(residual_model, (4, 6, 6, 2)),
                                         (lambda: residual_model(False), (3, 6, 6, 2)),
                                         (shared_model, (5, 4))])
def test_graph_gradients_match_central_differences(backend, float64, make, shape):
    """Every weight's gradient, summed where a tensor fans out (the skip connection's
    identity path) and over the uses of a shared layer, on every backend, fused or not."""
    rng = np.random.default_rng(3)
    model = make()
    model.compile("sgd", "sparse_categorical_crossentropy")
    assert check_model(model, rng.standard_normal(shape), rng.integers(0, 3, shape[0])) < TOL


def test_the_input_gradient_of_a_graph_matches_central_differences(backend, float64):
    rng = np.random.default_rng(4)
    model = residual_model(norm=False)
    x, dy = rng.standard_normal((2, 6, 6, 2)), rng.standard_normal((2, 3))
    analytic = model.input_gradient(x, dy)
    numeric = numerical_gradient(lambda v: float((model.predict(v) * dy).sum()), x.copy())
    assert relative_error(analytic, numeric) < TOL


def test_a_chain_built_as_a_graph_trains_as_the_sequential(backend):
    """Model(x, chain) and Sequential of the same layers: one training step, the same
    weights bit for bit."""
    def layers():
        return [Conv2D(3, 3, activation="relu"), MaxPool2D(2), Flatten(),
                Dense(3, activation="softmax")]

    rng = np.random.default_rng(0)
    x, y = rng.random((16, 8, 8, 1), dtype=np.float32), rng.integers(0, 3, 16)
    stack = Sequential([Input((8, 8, 1)), *layers()])
    h = inputs = Input((8, 8, 1))
    for layer in layers():
        h = layer(h)
    graph = Model(inputs, h)
    for model in (stack, graph):
        model.compile("adam", metrics=["accuracy"])
        model.fit(x, y, epochs=2, batch_size=4, seed=1, verbose=0)
    for a, b in zip(stack.get_weights(), graph.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert [type(s).__name__ for s in stack.stages()] == [
        type(s).__name__ for s in graph.stages()]


def test_fusion_works_inside_a_block_and_never_across_a_merge():
    """On a fusing backend: Conv-BN-ReLU in the branch fuse (BatchNorm and its ReLU as one
    kernel), a conv whose output is read twice or goes into an Add stays apart."""
    with minicnn.use_backend("numba"):
        model = residual_model()
        model.compile("adam")
        names = [(type(s).__name__, "+".join(layer.name for layer in
                                              minicnn.fusion.layers_of(s)))
                 for s in model.stages()]
    kinds = [kind for kind, _ in names]
    assert kinds.count("NormReLU") == 1 and "Add" in kinds
    add = kinds.index("Add")
    assert names[add - 1][0] == "Conv2D"  # its input conv: read by the Add only, unfused
    assert model.stages()[0].need_dx is False  # the stem: no input gradient


def test_a_shared_layer_has_one_set_of_weights():
    model = shared_model()
    dense = [layer for layer in model.layers if isinstance(layer, Dense)]
    assert len(dense) == 4 and len(model.nodes()) == 8
    assert dense[0].count_params() == 20 and model.count_params() == 20 + 20 + 10 + 21


def test_the_summary_says_what_each_layer_reads():
    lines = []
    residual_model().summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Connected to" in text and "input_layer (InputLayer)" in text
    add = next(line for line in lines if line.startswith(" add (Add)"))
    assert "re_lu[0][0], conv2d_2[0][0]" in add or "conv2d[0][0], conv2d_2[0][0]" in add
    twice = []
    shared_model().summary(print_fn=twice.append)
    assert any("dense[1][0]" in line for line in twice)  # the second call of the shared one


def test_save_and_load_give_back_the_graph(tmp_path, backend):
    """The same predictions after load, and fit, save, load, fit is fit, fit."""
    rng = np.random.default_rng(1)
    x, y = rng.random((12, 6, 6, 2), dtype=np.float32), rng.integers(0, 3, 12)
    model = residual_model()
    model.compile("adam", metrics=["accuracy"])
    model.fit(x, y, epochs=1, batch_size=4, seed=0, verbose=0)
    model.save(tmp_path / "g.npz")
    loaded = load_model(tmp_path / "g.npz")
    assert type(loaded) is Model and [l.name for l in loaded.layers] == [
        l.name for l in model.layers]
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    model.fit(x, y, epochs=1, batch_size=4, seed=2, verbose=0)
    loaded.fit(x, y, epochs=1, batch_size=4, seed=2, verbose=0)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_file_whose_graph_names_a_missing_layer_is_refused(tmp_path):
    import json

    model = shared_model()
    model.save(tmp_path / "g.npz")
    with np.load(tmp_path / "g.npz") as f:
        arrays = dict(f)
    cfg = json.loads(arrays["config"].tobytes())
    cfg["graph"]["nodes"][2][0] = "conv2d_9"
    arrays["config"] = np.frombuffer(json.dumps(cfg).encode(), np.uint8)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="names layer 'conv2d_9', which is missing"):
        load_model(tmp_path / "bad.npz")
    cfg["graph"]["nodes"][2] = ["dense_1", 5]  # reads a tensor not made yet: a cycle
    arrays["config"] = np.frombuffer(json.dumps(cfg).encode(), np.uint8)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="made before it"):
        load_model(tmp_path / "bad.npz")


def test_bad_graphs_are_clear_errors_before_any_work():
    x = Input((4,))
    with pytest.raises(ValueError, match="output is its input"):
        Model(x, x)
    other = Input((4,))
    with pytest.raises(ValueError, match="another graph"):
        Model(x, Dense(2)(other))
    with pytest.raises(ValueError, match="another graph"):
        Model(x, Add()([Dense(2)(x), Dense(2)(other)]))
    with pytest.raises(ValueError, match="adds tensors of one shape"):
        Add()([Dense(2)(x), Dense(3)(x)])
    images = Input((4, 4, 2))
    with pytest.raises(ValueError, match="other axes are equal"):
        Concatenate()([images, MaxPool2D(2)(images)])
    with pytest.raises(TypeError, match="called on a ndarray"):
        Dense(2)(np.ones((3, 4)))
    with pytest.raises(TypeError, match="takes a list of two or more"):
        Add()(x)
    with pytest.raises(TypeError, match="takes one tensor"):
        Dense(2)([x, x])
    with pytest.raises(TypeError, match="merge layers"):
        x + x  # noqa: B018
    dense = Dense(2)
    dense(x)
    with pytest.raises(ValueError, match="same input shape"):
        dense(Input((5,)))
    with pytest.raises(ValueError, match="one input tensor"):
        Model([x, other], Dense(2)(x))
    with pytest.raises(TypeError, match="Input"):
        Model(Dense(2)(x), Dense(2)(x))
    norm = BatchNormalization()
    with pytest.raises(ValueError, match="moving statistics"):
        Model(x, norm(norm(x)))
    with pytest.raises(TypeError, match="a stack cannot give it"):
        Sequential([Input((4,)), Add()])


def test_a_cycle_is_named():
    x = Input((3,))
    a = Dense(3)(x)
    b = Dense(3)(a)
    a.inputs = (b,)  # only by hand: a layer call cannot make one
    with pytest.raises(ValueError, match="cycle"):
        Model(x, Dense(2)(b))


def test_the_same_seed_gives_the_same_graph_weights():
    rng = np.random.default_rng(2)
    x, y = rng.random((8, 6, 6, 2), dtype=np.float32), rng.integers(0, 3, 8)
    weights = []
    for _ in range(2):
        model = residual_model()
        model.compile("adam")
        model.fit(x, y, epochs=1, batch_size=4, seed=5, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def test_the_inspection_tools_see_the_graph(tmp_path):
    """feature_maps (every call, a shared layer's second as name[1]), saliency, profile's
    rows, LayerStats and plot_model on a graph."""
    from minicnn import inspect, plotting
    from minicnn.callbacks import LayerStats

    rng = np.random.default_rng(6)
    x, y = rng.random((8, 6, 6, 2), dtype=np.float32), rng.integers(0, 3, 8)
    model = residual_model()
    model.compile("adam")
    maps = inspect.feature_maps(model, x[:2])
    assert list(maps)[:2] == ["conv2d", "conv2d_1"] and maps["add"].shape == (2, 6, 6, 3)
    assert len(maps) == len(model.nodes())
    flat = shared_model()
    assert {"dense", "dense[1]"} <= set(inspect.feature_maps(flat, np.ones((1, 4))))
    assert inspect.saliency(model, x[:2]).shape == (2, 6, 6, 2)
    rows = inspect.profile(model, x, y, steps=2)
    assert [r["layer"] for r in rows][-3:] == ["loss", "optimizer", "outside the layers"]
    assert any(r["layer"] == "add" and r["flops"] > 0 for r in rows)
    stats = LayerStats()
    model.fit(x, y, epochs=1, batch_size=4, verbose=0, callbacks=[stats])
    assert {"add", "add_1"} <= {r["layer"] for r in stats.records}
    plotting.plot_model(model, tmp_path / "graph.png")
    assert (tmp_path / "graph.png").stat().st_size > 0
