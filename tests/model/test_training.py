"""compile, fit, evaluate and train_on_batch: metrics, sample and class weights, label
smoothing, non-finite losses and updates, threads, and the settings that must not be
ignored."""



import threading
import warnings

import numpy as np
import pytest

import minicnn
from minicnn import Sequential, load_model, losses
from minicnn.callbacks import (
    LearningRateScheduler,
    ReduceLROnPlateau,
)
from minicnn.layers import (
    Dense,
    Flatten,
    Input,
    MaxPool2D,
)
from minicnn.optimizers import (
    SGD,
    Adam,
    CosineDecay,
    ExponentialDecay,
)
from tests.helpers import (
    bn_cnn,
    dense_classifier,
    numpy_ref,
    small_dense_model,
    synthetic_images,
    trained_model,
)


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




def _weighted_run(backend, lr=0.1, **fit_kwargs):
    x, y = synthetic_images(24, 8)
    with minicnn.use_backend(backend):
        model = dense_classifier(SGD(lr))
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
        dense_classifier().fit(x, y, epochs=1, verbose=0, **kwargs)


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
        stepped, fitted = dense_classifier(), dense_classifier()
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




def test_fit_stops_on_a_non_finite_loss_and_keeps_history_and_weights():
    model = Sequential([Dense(3, activation="softmax", input_shape=(2,))])
    model.compile(SGD(1e35), "sparse_categorical_crossentropy", ["accuracy"])
    x = np.array([[1e3, -1e3], [-1e3, 1e3], [5.0, 5.0]] * 4, np.float32)
    y = np.array([0, 1, 2] * 4)
    with pytest.warns(RuntimeWarning, match="fit stopped at epoch"), np.errstate(all="ignore"):
        history = model.fit(x, y, batch_size=3, epochs=5, verbose=0, seed=0)
    assert 1 <= len(history.history["loss"]) < 5
    assert not np.isfinite(history.history["loss"][-1])
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_finiteness_is_checked_after_the_cast_to_floatx():
    model = Sequential([Dense(2, input_shape=(3,))])
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="NaN or inf"):
        model.fit(np.full((2, 3), 1e300), np.zeros((2, 2)), verbose=0)
    model.build(seed=0)
    kernel, bias = model.get_weights()
    with pytest.raises(ValueError, match="NaN or inf"):
        model.set_weights([np.full(kernel.shape, 1e300), bias])




def test_trainable_false_freezes_a_layer_and_summary_counts_it(tmp_path, capsys):
    model = trained_model()
    model.layers[0].trainable = False
    frozen = model.layers[0].get_weights()
    moving = model.layers[-1].get_weights()
    x = np.random.default_rng(2).random((8, 6, 6, 1)).astype(np.float32)
    model.fit(x, np.arange(8) % 3, batch_size=4, epochs=1, verbose=0)
    for a, b in zip(frozen, model.layers[0].get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(moving[0], model.layers[-1].get_weights()[0])
    model.summary()
    out = capsys.readouterr().out
    assert "Trainable params: 27" in out and "Non-trainable params: 20" in out
    model.save(tmp_path / "m.npz")
    assert load_model(tmp_path / "m.npz").layers[0].trainable is False


def test_validation_split_with_a_flow_is_an_error():
    from minicnn.augment import ImageDataGenerator
    x = np.zeros((8, 6, 6, 1), np.float32)
    flow = ImageDataGenerator().flow(x, np.arange(8) % 3, batch_size=4)
    with pytest.raises(ValueError, match="validation_split"):
        trained_model().fit(flow, epochs=1, validation_split=0.2, verbose=0)


def test_metrics_as_one_string():
    model = Sequential([Dense(2, activation="softmax", input_shape=(3,))])
    model.compile("adam", "sparse_categorical_crossentropy", metrics="accuracy")
    assert model.metrics == ["accuracy"]


def test_numpy_scalars_are_accepted_as_hyperparameters():
    opt = Adam(learning_rate=np.float32(0.01), beta_1=np.float64(0.8))
    assert opt.learning_rate == pytest.approx(0.01) and opt.beta_1 == 0.8
    assert SGD(np.float32(0.1), momentum=np.float32(0.5)).momentum == 0.5
    with pytest.raises(ValueError):
        Adam(learning_rate=True)


def test_one_optimizer_cannot_train_two_models():
    opt = Adam()
    first = Sequential([Dense(2, input_shape=(3,))], name="first")
    first.compile(opt, "mse")
    first.compile(opt, "mse")  # recompiling the same model is fine
    with pytest.raises(ValueError, match="already trains model 'first'"):
        Sequential([Dense(2, input_shape=(3,))]).compile(opt, "mse")


def test_set_floatx_after_build_converts_the_model():
    model = trained_model()
    x = np.random.default_rng(3).random((4, 6, 6, 1))
    try:
        minicnn.set_floatx("float64")
        model.fit(x, np.arange(4) % 3, epochs=1, verbose=0)
        assert model.get_weights()[0].dtype == np.float64
        assert model.predict(x).dtype == np.float64
    finally:
        minicnn.set_floatx("float32")
    assert model.predict(x).dtype == np.float32




@pytest.mark.parametrize("make", [
    lambda: SGD(1e39), lambda: Adam(epsilon=1e-50),
    lambda: minicnn.optimizers.RMSprop(epsilon=1e-50)])
def test_hyper_parameters_float32_cannot_carry_are_refused(make):
    with pytest.raises(ValueError, match="cannot be carried in float32"):
        make()


def test_a_schedule_value_that_is_not_a_learning_rate_stops_before_the_update():
    from minicnn.optimizers import LearningRateSchedule

    class Broken(LearningRateSchedule):
        def __call__(self, step):
            return float("nan") if step >= 2 else 0.01

    for schedule in (ExponentialDecay(0.1, 1, 10.0), Broken()):
        model = small_dense_model()
        model.compile(SGD(schedule), "sparse_categorical_crossentropy")
        x, y = np.ones((64, 4)), np.arange(64) % 2
        with pytest.raises(ValueError, match="learning-rate schedule .* gave"):
            model.fit(x, y, batch_size=1, epochs=1, verbose=0, seed=0)
        assert all(np.isfinite(w).all() for w in model.get_weights())


def test_learning_rate_callbacks_refuse_a_schedule_and_take_one_argument_functions():
    x, y = np.ones((8, 4)), np.arange(8) % 2
    for callback in (LearningRateScheduler(lambda epoch, lr: lr), ReduceLROnPlateau("loss")):
        model = small_dense_model()
        model.compile(Adam(CosineDecay(1e-3, 100)), "sparse_categorical_crossentropy")
        with pytest.raises(TypeError, match="is a schedule"):
            model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
        assert isinstance(model.optimizer.learning_rate, CosineDecay)
    model = small_dense_model()
    model.compile(SGD(0.1), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, verbose=0, callbacks=[LearningRateScheduler(lambda e: 0.5 / (e + 1))])
    assert model.optimizer.learning_rate == 0.25


def test_regularizer_instances_are_validated_like_names():
    from minicnn.regularizers import L1L2
    for bad in (L1L2(-1.0, 0.0), L1L2("x", 0.0), L1L2(float("nan"), 0.0)):
        with pytest.raises(ValueError, match="regularizer factors"):
            Dense(3, kernel_regularizer=bad)


def test_input_shapes_must_be_positive_ints_and_agree():
    for bad in ((4.7,), (0, 3), "28", (True,)):
        with pytest.raises(ValueError, match="shape of one sample as positive ints"):
            Dense(3, input_shape=bad)
    with pytest.raises(ValueError, match="disagree; give only one"):
        Sequential([Input((4,)), Dense(3, input_shape=(5,))])
    assert Sequential([Input((4,)), Dense(3, input_shape=(4,))]).input_shape == (4,)


def test_to_float_images_scales_pixels_once():
    from minicnn.datasets import to_float_images
    pixels = np.array([[0, 255]], dtype=np.uint8)
    once = to_float_images(pixels)
    np.testing.assert_array_equal(to_float_images(once[..., 0]), once)
    np.testing.assert_array_equal(to_float_images(pixels.astype(float)), once)


def test_an_unbuilt_layer_has_no_weights_and_one_layer_cannot_stand_twice():
    assert Dense(3).get_weights() == []
    dense = Dense(3, input_shape=(4,))
    with pytest.raises(ValueError, match="already in this model"):
        Sequential([dense, dense])
    first = Sequential([Dense(2, input_shape=(4,)), Dense(2)])
    shared = first.layers[1]
    assert shared.name == "dense_1"
    with pytest.raises(ValueError, match="belongs to another model"):
        Sequential([Dense(2, input_shape=(4,), name="dense_1"), shared])
    assert shared.name == "dense_1"


def test_generators_honour_sample_weights_and_may_end_early():
    x, y = np.ones((8, 4)), np.arange(8) % 2

    def weighted(w):
        while True:
            yield x, y, w

    model = small_dense_model()
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.build(seed=0)
    start = model.get_weights()
    model.fit(weighted(np.zeros(8)), steps_per_epoch=2, epochs=1, verbose=0)
    for a, b in zip(start, model.get_weights()):  # zero weights: zero loss, no change
        np.testing.assert_array_equal(a, b)

    def three_batches():
        for _ in range(3):
            yield x, y

    with pytest.warns(RuntimeWarning, match="ran out of data"):
        history = model.fit(three_batches(), steps_per_epoch=2, epochs=3, verbose=0)
    assert len(history.history["loss"]) == 2  # epoch 2 had one step; epoch 3 none
    with pytest.raises(ValueError, match="steps_per_epoch is for generators"):
        model.fit(x, y, steps_per_epoch=3, verbose=0)


def test_a_second_thread_cannot_enter_a_running_model():
    model = small_dense_model()
    model.compile("sgd", "sparse_categorical_crossentropy")
    started, errors = threading.Event(), []

    class Pause(minicnn.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            started.set()
            thread.join()

    def predict_meanwhile():
        started.wait()
        try:
            model.predict(np.ones((2, 4)))
        except RuntimeError as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=predict_meanwhile)
    thread.start()
    model.fit(np.ones((4, 4)), np.array([0, 1, 0, 1]), epochs=1, verbose=0,
              callbacks=[Pause()])
    assert errors and "another thread" in errors[0]
    assert model.predict(np.ones((2, 4))).shape == (2, 2)  # free again afterwards


def test_a_step_that_diverges_leaves_batchnorm_statistics_as_they_were(backend):
    """A batch of 3e38 pixels: its loss is not finite, so nothing of its step is applied,
    BatchNorm's moving statistics included; predictions stay finite and the model saves."""
    from minicnn.layers import BatchNormalization, Conv2D, ReLU
    model = Sequential([Conv2D(2, 3, use_bias=False, input_shape=(6, 6, 1)),
                        BatchNormalization(), ReLU(), Flatten(), Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.random((8, 6, 6, 1)), rng.integers(0, 3, 8)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=0)
    before = model.get_weights()
    with np.errstate(all="ignore"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # (3e38 pixels also draw the raw-pixels warning)
        model.fit(np.full_like(x, 3e38), y, batch_size=8, epochs=1, verbose=0)
        loss = model.train_on_batch(np.full_like(x, 3e38), y)
    assert any("fit stopped" in str(w.message) for w in caught)
    assert not np.isfinite(loss)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(model.predict(x)).all()
