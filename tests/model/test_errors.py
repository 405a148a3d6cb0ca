"""Every mistake a user can make is a clear error, raised before any work, naming what
was wrong and what was expected."""


import os

import numpy as np
import pytest

import minicnn
import minicnn.augment
from minicnn import Sequential, load_model
from minicnn.layers import Conv2D, Dense, Flatten, MaxPool2D
from minicnn.optimizers import SGD, Adam
from tests.helpers import small_cnn, small_dense_model


def _fitted_small():
    model = small_dense_model()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    return model


_X, _Y = np.ones((6, 4)), np.arange(6) % 2


@pytest.mark.parametrize("call, error, message", [
    (lambda: _fitted_small().fit(_X, _Y, validation_split="0.2", verbose=0), ValueError,
     "validation_split must be in"),
    (lambda: _fitted_small().fit(_X, _Y, seed=-1, verbose=0), ValueError, "seed must be"),
    (lambda: _fitted_small().fit(_X, _Y, seed=1.5, verbose=0), ValueError, "seed must be"),
    (lambda: _fitted_small().fit(_X, _Y, class_weight={1: "heavy"}, verbose=0), ValueError,
     "class_weight entry 1: 'heavy'"),
    (lambda: _fitted_small().fit(_X, _Y, class_weight={"1": 2.0}, verbose=0), ValueError,
     "class_weight entry '1'"),
    (lambda: _fitted_small().fit([[1, 2, 3, 4], [1, 2]], [0, 1], verbose=0), ValueError,
     "x is ragged"),
    (lambda: Sequential().summary(), ValueError, "has no layers yet"),
    (lambda: small_dense_model().get_layer(index=5), ValueError,
     r"get_layer\(index=5\): the model has 2"),
    (lambda: small_dense_model().compile("adam", ["mse"]), ValueError, "one output, so one loss"),
    (lambda: small_dense_model().set_weights(["a", "b", "c", "d"]), ValueError,
     "array of real numbers"),
    (lambda: _fitted_small().fit(_X, _Y, verbose=0, callbacks=minicnn.callbacks.EarlyStopping()),
     TypeError,
     "callbacks must be a list"),
    (lambda: minicnn.augment.ImageDataGenerator(height_shift_range=float("nan")), ValueError,
     "shift range must be a finite, non-negative number"),
    (lambda: minicnn.augment.ImageDataGenerator().flow(np.zeros((2, 4, 4, 1)), np.zeros(2),
                                                       seed=-3), ValueError, "seed must be"),
    (lambda: load_model("/dev/zero"), ValueError, "not a regular file"),
])
def test_errors_name_what_was_wrong(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_model_files_by_bytes_path_fifo_and_folder(tmp_path):
    model = small_dense_model()
    model.save(os.fsencode(tmp_path / "m.npz"))
    assert load_model(tmp_path / "m.npz").layers[0].units == 3
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    for path in (fifo, tmp_path):
        with pytest.raises(ValueError, match="not a regular file"):
            load_model(path)  # refused at once: reading a pipe would wait for ever


def test_model_checkpoint_checks_its_names_and_makes_its_folder(tmp_path):
    from minicnn.callbacks import CSVLogger, ModelCheckpoint
    with pytest.raises(ValueError, match="no validation data"):
        _fitted_small().fit(_X, _Y, verbose=0,
                            callbacks=[ModelCheckpoint(str(tmp_path / "ck-{val_loss:.2f}.npz"))])
    assert list(tmp_path.iterdir()) == []
    path = tmp_path / "new" / "folder" / "ck-{epoch}.npz"
    _fitted_small().fit(_X, _Y, epochs=2, verbose=0, callbacks=[ModelCheckpoint(str(path))])
    assert sorted(p.name for p in (tmp_path / "new" / "folder").iterdir()) == [
        "ck-1.npz", "ck-2.npz"]

    class LateKey(minicnn.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch:
                logs["late"] = 1.0

    csv_path = tmp_path / "log.csv"
    with pytest.warns(RuntimeWarning, match=r"\['late'\] appeared after the first epoch"):
        _fitted_small().fit(_X, _Y, epochs=2, verbose=0,
                            callbacks=[LateKey(), CSVLogger(str(csv_path))])
    assert len(csv_path.read_text().splitlines()) == 3


def test_compute_gradients_builds_an_unbuilt_model():
    model = small_dense_model()
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = model.check_data(_X, _Y)
    assert np.isfinite(model.compute_gradients(x, y))
    assert model.layers[0].grads["kernel"].shape == (4, 3)


def test_history_stays_aligned_after_a_diverged_epoch():
    model = small_dense_model()
    model.compile(SGD(0.1), "sparse_categorical_crossentropy", ["accuracy"])
    x = np.ones((6, 4))
    x[0, 0] = 1e30  # its loss overflows: the first epoch diverges
    history = model.fit(x, _Y, epochs=2, verbose=0, terminate_on_nan=False,
                        validation_data=(np.ones((2, 4)), np.array([0, 1])))
    lengths = {key: len(values) for key, values in history.history.items()}
    assert set(lengths.values()) == {2}, lengths


def test_early_stopping_keeps_the_best_epoch_below_the_baseline_as_keras_3():
    from minicnn.callbacks import Callback, EarlyStopping
    losses = iter([0.9, 0.5, 0.7, 0.8])

    class Scripted(Callback):  # fakes the monitored value before EarlyStopping reads it
        def on_epoch_end(self, epoch, logs=None):
            logs["scripted"] = next(losses)

    model = _fitted_small()
    stop = EarlyStopping("scripted", mode="min", patience=2, baseline=0.1,
                         restore_best_weights=True)
    saved = []

    class Keep(Callback):
        def on_epoch_end(self, epoch, logs=None):
            saved.append(self.model.get_weights())

    history = model.fit(_X, _Y, epochs=4, verbose=0, callbacks=[Scripted(), stop, Keep()])
    assert len(history.history["loss"]) == 3  # never beats the baseline: patience runs out
    assert stop.best == 0.5 and stop.best_epoch == 1
    for a, b in zip(model.get_weights(), saved[1]):
        np.testing.assert_array_equal(a, b)


def test_accuracy_with_binary_cross_entropy_over_several_outputs_is_binary_accuracy(backend):
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((12, 4)), (rng.random((12, 3)) > 0.5).astype(float)
    model = Sequential([Dense(3, activation="sigmoid", input_shape=(4,))])
    model.compile("sgd", "binary_crossentropy", ["accuracy"])
    model.build(seed=0)
    _, accuracy = model.evaluate(x, y)
    expected = np.mean((model.predict(x) > 0.5) == (y > 0.5))
    assert accuracy == pytest.approx(expected)
    assert accuracy != pytest.approx(np.mean(model.predict(x).argmax(1) == y.argmax(1)))


def test_saving_over_a_read_only_file_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    path.write_bytes(b"the user's old file")
    path.chmod(0o444)
    real_access = os.access
    # as root every file is writable: pretend to be a user that may not write this one
    monkeypatch.setattr(os, "access", lambda p, mode: False if os.fspath(p) == str(path)
                        else real_access(p, mode))
    with pytest.raises(PermissionError, match="read-only"):
        small_dense_model().save(path)
    assert path.read_bytes() == b"the user's old file"


def test_sparse_labels_with_many_classes_never_become_one_n_by_k_array():
    """100,000 classes: the one-hot rows are made per batch, not for the whole data set
    (2,000 x 100,000 float32 one-hot rows would be 800 MB)."""
    import tracemalloc

    model = Sequential([Dense(100_000, activation="softmax", input_shape=(4,))])
    model.compile("sgd", "sparse_categorical_crossentropy", ["accuracy"])
    rng = np.random.default_rng(0)
    x, y = rng.random((2000, 4)), rng.integers(0, 100_000, 2000)
    y[:5] = 99_999  # the last class
    tracemalloc.start()
    try:
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, class_weight={99_999: 2.0})
        loss, accuracy = model.evaluate(x, y, batch_size=32)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200e6, f"peak {peak / 1e6:.0f} MB"
    assert np.isfinite(loss) and 0 <= accuracy <= 1
    # the same loss as one-hot targets with categorical cross-entropy
    sparse_loss = model.evaluate(x[:32], y[:32])[0]
    model.compile(SGD(), "categorical_crossentropy", ["accuracy"])
    one_hot = np.zeros((32, 100_000))
    one_hot[np.arange(32), y[:32]] = 1
    assert np.isclose(model.evaluate(x[:32], one_hot)[0], sparse_loss, rtol=1e-5)


def _mlp(input_shape=(4,)):
    """The audit's m: Dense(8, relu) -> Dense(3, softmax)."""
    return Sequential([Dense(8, activation="relu", input_shape=input_shape),
                       Dense(3, activation="softmax")])


def test_a_model_that_knows_its_input_shape_is_built_at_construction_as_in_keras():
    from minicnn.layers import Input
    for model in (_mlp(), Sequential([Input((4,)), Dense(8, activation="relu"), Dense(3)])):
        assert model.built
        kernel, bias = model.layers[0].get_weights()
        assert kernel.shape == (4, 8) and bias.shape == (8,)
        model.add(Dense(2))  # added later: built too, as Keras' add does
        assert model.layers[-1].get_weights()[0].shape == (3, 2)
    assert Sequential([Dense(3)]).layers[0].get_weights() == []  # no input shape: not yet
    model = _mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = np.random.default_rng(0).standard_normal((8, 4)), np.arange(8) % 3
    assert np.isfinite(model.compute_gradients(x, y))


def test_a_seed_redraws_weights_still_as_construction_drew_them_and_nothing_else():
    """fit(seed=s) and build(seed=s) give the weights a model built late gets from s; weights
    set or trained since construction are never redrawn."""
    x, y = np.random.default_rng(0).standard_normal((16, 4)), np.arange(16) % 3

    def trained(model, **fit):
        model.compile(SGD(0.1), "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=1, verbose=0, **fit)
        return model.get_weights()

    late = Sequential()
    for layer in _mlp(input_shape=None).layers:
        late.add(layer, rebuild=False)
    late.layers[0].input_shape = (4,)
    assert not late.built
    for got, want in zip(trained(_mlp(), seed=0), trained(late, seed=0)):
        np.testing.assert_array_equal(got, want)
    early, late = _mlp(), _mlp(input_shape=None)
    early.build(seed=3)
    late.build((None, 4), seed=3)
    for got, want in zip(early.get_weights(), late.get_weights()):
        np.testing.assert_array_equal(got, want)
    chosen = [np.full_like(w, 0.25) for w in _mlp().layers[0].get_weights()]
    for setter in ("model", "layer"):
        model = _mlp()
        if setter == "model":
            model.set_weights(chosen + model.get_weights()[2:])
        else:
            model.layers[0].set_weights(chosen)
        model.compile(SGD(1e-30), "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=1, verbose=0, seed=0)  # no redraw: what was set stays
        np.testing.assert_allclose(model.layers[0].get_weights()[0], 0.25)
    model = _mlp()
    before = trained(model, seed=1)
    model.build(seed=2)  # trained: a no-op
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)




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


def test_set_floatx_rejects_other_types():
    with pytest.raises(ValueError, match="float32"):
        minicnn.set_floatx("float16")


def test_a_flow_as_validation_data_is_refused_before_it_is_unpacked():
    """A flow of two batches has a length of 2; unpacking it as (x, y) would read an
    endless generator."""
    from minicnn.augment import ImageDataGenerator
    x, y = np.random.default_rng(0).random((8, 4, 4, 1)), np.arange(8) % 2
    flow = ImageDataGenerator().flow(x, y, batch_size=4, seed=0)
    assert len(flow) == 2
    model = Sequential([Flatten(input_shape=(4, 4, 1)), Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="validation_data must be a tuple"):
        model.fit(x, y, validation_data=flow, verbose=0)


def test_complex_inputs_are_refused_not_cast():
    model = Sequential([Dense(2, input_shape=(3,))])
    model.compile("sgd", "mse")
    with pytest.raises(TypeError, match="must hold real numbers, got complex"):
        model.fit(np.ones((4, 3)) * (1 + 2j), np.zeros((4, 2)), verbose=0)
    with pytest.raises(TypeError, match="got complex"):
        model.predict(np.ones((1, 3), np.complex64))


def test_mistakes_with_flows_and_attributes_are_clear():
    from minicnn.augment import ImageDataGenerator

    def batches():
        yield np.zeros((2, 3)), np.zeros((2, 2))

    model = Sequential([Dense(2, input_shape=(3,))])
    model.compile("sgd", "mse")
    with pytest.raises(TypeError, match=r"call it: fit\(batches\(...\), ...\)"):
        model.fit(batches, verbose=0)
    empty = ImageDataGenerator().flow(np.zeros((0, 4, 4, 1)), np.zeros(0), batch_size=2)
    images = Sequential([Flatten(input_shape=(4, 4, 1)), Dense(2)])
    images.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="flow given to fit is empty"):
        images.fit(empty, verbose=0)
    for cval in (np.nan, "white", True):
        with pytest.raises(ValueError, match="cval"):
            ImageDataGenerator(width_shift_range=2, fill_mode="constant", cval=cval)
    with pytest.raises(ValueError, match="learning_rate"):
        model.optimizer.learning_rate = "0.1"
    model.optimizer.learning_rate = 0.5  # a number is taken, as in Keras
    assert model.optimizer.current_learning_rate() == 0.5
