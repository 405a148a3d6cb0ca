"""The layers, optimizers, schedules, callbacks and metrics past the seeds, in Keras' meaning."""

import csv
import math

import numpy as np
import pytest

import minicnn
from minicnn import Sequential, load_model, losses
from minicnn.backends import load
from minicnn.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
    TerminateOnNaN,
)
from minicnn.layers import (
    AveragePooling2D,
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    Input,
    MaxPool2D,
)
from minicnn.optimizers import (
    SGD,
    AdamW,
    CosineDecay,
    ExponentialDecay,
    PiecewiseConstantDecay,
    RMSprop,
)
from tests.conftest import synthetic_images

numpy_ref = load("numpy")


def bn_cnn(dropout=0.25):
    return Sequential([
        Input((8, 8, 1)),
        Conv2D(4, 3, padding="same", use_bias=False, kernel_initializer="he_normal"),
        BatchNormalization(),
        Conv2D(4, 3, activation="gelu", kernel_regularizer="l2"),
        AveragePooling2D(2, padding="same"),
        Dropout(dropout),
        GlobalAveragePooling2D(),
        Dense(4, activation="softmax"),
    ])


# -- layers ------------------------------------------------------------------------------------


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


# -- optimizers and schedules ------------------------------------------------------------------


def _one_step(optimizer, p, g):
    layer = Dense(p.shape[1], use_bias=False)
    layer.build((p.shape[0],))
    layer.set_weights([p])
    layer.grads = {"kernel": g.astype(np.float32)}
    optimizer.apply([layer])
    return layer.get_weights()[0]


def test_rmsprop_adamw_and_nesterov_follow_their_formulas(rng):
    p, g = rng.standard_normal((3, 2)).astype(np.float32), rng.standard_normal((3, 2))
    v = 0.1 * g**2
    np.testing.assert_allclose(_one_step(RMSprop(0.01), p, g),
                               p - 0.01 * g / np.sqrt(v + 1e-7), rtol=1e-5)
    decayed = p * (1 - 0.01 * 0.1)
    adam_step = 0.01 * g / (np.abs(g) + 1e-7)  # Adam's first step: lr * sign(g)
    np.testing.assert_allclose(_one_step(AdamW(0.01, weight_decay=0.1), p, g),
                               decayed - adam_step, rtol=1e-4, atol=1e-6)
    velocity = -0.1 * g
    np.testing.assert_allclose(_one_step(SGD(0.1, momentum=0.9, nesterov=True), p, g),
                               p + 0.9 * velocity - 0.1 * g, rtol=1e-5)


def test_schedules():
    exp = ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    assert exp(0) == 0.1 and exp(10) == pytest.approx(0.05)
    assert exp(5) == pytest.approx(0.1 / 2**0.5)
    assert ExponentialDecay(0.1, 10, 0.5, staircase=True)(19) == pytest.approx(0.05)
    cos = CosineDecay(1.0, decay_steps=100, alpha=0.1)
    assert cos(0) == 1.0 and cos(100) == pytest.approx(0.1) and cos(500) == pytest.approx(0.1)
    assert cos(50) == pytest.approx(0.55)
    pw = PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1])
    assert [pw(s) for s in (0, 10, 11, 20, 21)] == [1.0, 1.0, 0.5, 0.5, 0.1]
    with pytest.raises(ValueError):
        PiecewiseConstantDecay([10], [1.0])


def test_an_optimizer_with_a_schedule_trains_saves_and_loads(tmp_path):
    x, y = synthetic_images(32, 8)
    model = bn_cnn()
    opt = SGD(learning_rate=ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5))
    model.compile(opt, "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=0)
    assert opt.current_learning_rate() == pytest.approx(0.1 * 0.5 ** 2)  # after 4 steps
    model.save(tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    assert loaded.optimizer.current_learning_rate() == pytest.approx(0.025)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(loaded.predict(x), model.predict(x), rtol=1e-6)


# -- callbacks ------------------------------------------------------------------------------------


def _compiled(optimizer="adam"):
    model = Sequential([Flatten(input_shape=(8, 8, 1)), Dense(4, activation="softmax")])
    model.compile(optimizer, "sparse_categorical_crossentropy", ["accuracy"])
    return model


class Recorder(Callback):
    def __init__(self):
        super().__init__()
        self.calls = []

    def on_train_begin(self, logs=None):
        self.calls.append("train_begin")

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, sorted(logs)))

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(("batch_end", batch))

    def on_train_end(self, logs=None):
        self.calls.append("train_end")


def test_callback_hooks_run_in_keras_order():
    x, y = synthetic_images(16, 8)
    recorder = Recorder()
    _compiled().fit(x, y, batch_size=8, epochs=2, verbose=0, validation_split=0.25,
                    callbacks=[recorder])
    assert recorder.calls[0] == "train_begin" and recorder.calls[-1] == "train_end"
    ends = [c for c in recorder.calls if c[0] == "epoch_end"]
    assert [e[1] for e in ends] == [0, 1]
    assert ends[0][2] == ["accuracy", "loss", "val_accuracy", "val_loss"]
    with pytest.raises(TypeError, match="Callback"):
        _compiled().fit(x, y, epochs=1, verbose=0, callbacks=[print])


def test_early_stopping_stops_and_restores_the_best_weights():
    x, y = synthetic_images(32, 8)
    model = _compiled(SGD(0.5))
    best = {}

    class Spy(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if not best or logs["val_loss"] < best["loss"]:
                best.update(loss=logs["val_loss"], weights=self.model.get_weights())

    stop = EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True)
    # the validation labels are shuffled: val_loss soon stops improving
    yv = np.random.default_rng(0).permutation(y)
    history = model.fit(x, y, batch_size=8, epochs=50, verbose=0,
                        validation_data=(x, yv), callbacks=[Spy(), stop])
    assert len(history.history["loss"]) < 50 and stop.stopped_epoch > 0
    for a, b in zip(model.get_weights(), best["weights"]):
        np.testing.assert_array_equal(a, b)


def test_model_checkpoint_saves_only_improvements(tmp_path):
    x, y = synthetic_images(16, 8)
    path = tmp_path / "best-{epoch:02d}.npz"
    checkpoint = ModelCheckpoint(path, monitor="loss", save_best_only=True)
    _compiled(SGD(0.1)).fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[checkpoint])
    saved = sorted(p.name for p in tmp_path.iterdir())
    assert saved and saved[0] == "best-01.npz"
    load_model(tmp_path / saved[-1])


def test_learning_rate_callbacks():
    x, y = synthetic_images(16, 8)
    model = _compiled(SGD(0.1))
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0,
                        callbacks=[LearningRateScheduler(lambda epoch, lr: 0.1 / (epoch + 1))])
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.1 / 3])
    model = _compiled(SGD(0.1))
    plateau = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=10.0)
    model.fit(x, y, batch_size=8, epochs=4, verbose=0, callbacks=[plateau])
    assert model.optimizer.current_learning_rate() < 0.1


def test_terminate_on_nan_and_csv_logger(tmp_path):
    x, y = synthetic_images(16, 8)
    log = tmp_path / "log.csv"
    model = _compiled(SGD(0.1))
    x = x.copy()
    x[:, :4] = 3e38  # inputs so large that logits, and so the loss, overflow
    with np.errstate(all="ignore"):
        history = model.fit(x, y, seed=0, batch_size=4, epochs=3, verbose=0,
                            terminate_on_nan=False, callbacks=[TerminateOnNaN(), CSVLogger(log)])
    assert len(history.history["loss"]) == 1
    rows = list(csv.DictReader(log.open()))
    assert rows[0]["epoch"] == "0" and "loss" in rows[0]


# -- metrics, evaluate, get_layer -----------------------------------------------------------------


def test_metrics_by_keras_name_and_evaluate_return_dict():
    x, y = synthetic_images(20, 8)
    model = Sequential([Flatten(input_shape=(8, 8, 1)), Dense(4, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy",
                  ["sparse_categorical_accuracy", "sparse_top_k_categorical_accuracy"])
    model.fit(x, y, epochs=1, verbose=0, seed=0)
    logs = model.evaluate(x, y, return_dict=True)
    assert list(logs) == ["loss", "sparse_categorical_accuracy",
                          "sparse_top_k_categorical_accuracy"]
    predicted = model.predict(x)
    assert logs["sparse_categorical_accuracy"] == pytest.approx(np.mean(predicted.argmax(1) == y))
    assert logs["sparse_top_k_categorical_accuracy"] == 1.0  # 4 classes: always in the top 5
    top2 = numpy_ref.count_top_k(predicted, np.eye(4)[y], 2)
    assert top2 == np.sum((predicted > predicted[np.arange(20), y][:, None]).sum(1) < 2)


def test_get_layer():
    model = bn_cnn()
    assert model.get_layer("batch_normalization") is model.layers[1]
    assert model.get_layer(index=-1) is model.layers[-1]
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        model.get_layer("nope")


def test_new_layers_save_and_load(tmp_path):
    x, y = synthetic_images(16, 8)
    model = bn_cnn()
    model.compile(AdamW(), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=0)
    model.save(tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(loaded.predict(x), model.predict(x), rtol=1e-6)
    loaded.fit(x, y, batch_size=8, epochs=1, verbose=0)


# -- sample and class weights ---------------------------------------------------------------------


def _weighted_run(backend, lr=0.1, **fit_kwargs):
    x, y = synthetic_images(24, 8)
    with minicnn.use_backend(backend):
        model = _compiled(SGD(lr))
        history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, seed=0, **fit_kwargs)
        return model.get_weights(), history.history["loss"], model


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_sample_weight_scales_the_loss_like_keras(backend):
    x, y = synthetic_images(24, 8)
    plain_w, plain_loss, _ = _weighted_run(backend, lr=0.2)
    double_w, double_loss, model = _weighted_run(backend, lr=0.1, sample_weight=np.full(24, 2.0))
    for a, b in zip(plain_w, double_w):  # SGD: weight 2 at lr 0.1 == weight 1 at lr 0.2
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    unweighted = model.evaluate(x, y)
    assert model.evaluate(x, y, sample_weight=np.full(24, 2.0))[0] == pytest.approx(
        2 * unweighted[0], rel=1e-6)


def test_class_weight_equals_the_matching_sample_weight():
    _, y = synthetic_images(24, 8)
    by_class, _, _ = _weighted_run("numpy", class_weight={0: 3.0, 2: 0.5})
    by_sample, _, _ = _weighted_run("numpy",
                                    sample_weight=np.select([y == 0, y == 2], [3.0, 0.5], 1.0))
    for a, b in zip(by_class, by_sample):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kwargs, message", [
    ({"sample_weight": np.ones(5)}, "sample_weight must be 24 numbers"),
    ({"sample_weight": -np.ones(24)}, "sample_weight must be 24 numbers"),
    ({"class_weight": {7: 1.0}}, "class_weight entry 7"),
    ({"class_weight": [1.0, 2.0]}, "class_weight must be a dict"),
])
def test_bad_weights_are_clear_errors(kwargs, message):
    x, y = synthetic_images(24, 8)
    with pytest.raises(ValueError, match=message):
        _compiled().fit(x, y, epochs=1, verbose=0, **kwargs)


def test_default_layer_names_are_keras_snake_case_and_unique():
    model = bn_cnn()
    names = [layer.name for layer in model.layers]
    assert names[:5] == ["conv2d", "batch_normalization", "conv2d_1", "average_pooling2d",
                         "dropout"]
    assert len(set(names)) == len(names)
    assert MaxPool2D().name == "max_pool2d"


@pytest.mark.parametrize("name", minicnn.available_backends())
def test_train_on_batch_is_one_fit_step(name):
    """train_on_batch = fit on one batch, no shuffle; test/predict_on_batch = evaluate/predict."""
    x, y = synthetic_images(12, 8)
    with minicnn.use_backend(name):
        stepped, fitted = _compiled(), _compiled()
        stepped.build(seed=3)
        fitted.build(seed=3)
        loss, accuracy = stepped.train_on_batch(x, y)
        history = fitted.fit(x, y, batch_size=12, epochs=1, shuffle=False, verbose=0)
        for a, b in zip(stepped.get_weights(), fitted.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-6)
        assert loss == pytest.approx(history.history["loss"][0])
        assert accuracy == pytest.approx(history.history["accuracy"][0])
        assert stepped.test_on_batch(x, y, return_dict=True) == \
            pytest.approx(stepped.evaluate(x, y, return_dict=True))
        np.testing.assert_array_equal(stepped.predict_on_batch(x), stepped.predict(x))
    with pytest.raises(ValueError, match="label"):
        stepped.train_on_batch(x, y + 10)


@pytest.mark.parametrize("backend", ["numpy", "numba", "cython"])
@pytest.mark.parametrize("loss_class, sparse", [
    (losses.SparseCategoricalCrossentropy, True), (losses.CategoricalCrossentropy, False)])
def test_label_smoothing_follows_keras(backend, loss_class, sparse):
    """Keras' label_smoothing: the loss against (1 - s) y + s / K, accuracy against y; the
    fused training kernel and the unfused path (with a top-k metric) agree."""
    rng = np.random.default_rng(3)
    x, labels = rng.standard_normal((40, 5)).astype(np.float32), rng.integers(0, 4, 40)
    y = labels if sparse else np.eye(4, dtype=np.float32)[labels]
    with minicnn.use_backend(backend):
        model = Sequential([Dense(4, activation="softmax", input_shape=(5,))])
        model.build(seed=1)
        model.compile("sgd", loss_class(label_smoothing=0.2), ["accuracy"])
        probs = model.predict(x, verbose=0).astype(np.float64)
        target = np.eye(4)[labels] * 0.8 + 0.2 / 4
        loss, accuracy = model.evaluate(x, y, verbose=0)
        assert loss == pytest.approx(-(target * np.log(probs)).sum(axis=1).mean(), rel=1e-5)
        assert accuracy == pytest.approx(np.mean(probs.argmax(axis=1) == labels))
        model.compile("sgd", loss_class(label_smoothing=0.2),
                      ["accuracy", "top_k_categorical_accuracy"])
        assert model.evaluate(x, y, verbose=0)[:2] == pytest.approx([loss, accuracy], rel=1e-6)
        history = model.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=0)
        assert np.isfinite(history.history["loss"][0])


def test_label_smoothing_gradient_and_binary_targets(float64):
    from minicnn.gradcheck import check_model
    rng = np.random.default_rng(4)
    model = Sequential([Dense(3, activation="sigmoid", input_shape=(4,))])
    model.compile("sgd", losses.BinaryCrossentropy(label_smoothing=0.3))
    y = rng.integers(0, 2, (6, 3)).astype(np.float64)
    assert check_model(model, rng.standard_normal((6, 4)), y) < 1e-6
    probs = model.predict(x := rng.standard_normal((6, 4)), verbose=0)
    target = y * 0.7 + 0.15  # 0/1 targets move toward 1/2
    expected = -(target * np.log(probs) + (1 - target) * np.log(1 - probs)).mean()
    assert model.evaluate(x, y, verbose=0) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("value", [-0.1, 1.0, float("nan"), "0.1", True])
def test_label_smoothing_outside_zero_to_one_is_refused(value):
    with pytest.raises(ValueError, match="label_smoothing must be a number in \\[0, 1\\)"):
        losses.CategoricalCrossentropy(label_smoothing=value)


def test_a_saved_model_keeps_its_label_smoothing(tmp_path):
    model = Sequential([Dense(3, activation="softmax", input_shape=(4,))])
    model.compile("adam", losses.SparseCategoricalCrossentropy(label_smoothing=0.1))
    model.save(tmp_path / "smooth.npz")
    loaded = load_model(tmp_path / "smooth.npz")
    assert type(loaded.loss) is losses.SparseCategoricalCrossentropy
    assert loaded.loss.label_smoothing == 0.1
    for bad in ({"name": "mse", "label_smoothing": 0.1}, {"name": ["x"]},
                {"name": "categorical_crossentropy", "from_logits": True}):
        with pytest.raises(ValueError, match="unknown loss config"):
            losses.from_config(bad)
