"""Keras' callbacks: hook order, EarlyStopping, ModelCheckpoint, the learning-rate ones,
TerminateOnNaN and CSVLogger."""


import csv

import numpy as np
import pytest

from minicnn import load_model
from minicnn.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
    TerminateOnNaN,
)
from minicnn.optimizers import (
    SGD,
)
from tests.helpers import dense_classifier, synthetic_images


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
    dense_classifier().fit(x, y, batch_size=8, epochs=2, verbose=0, validation_split=0.25,
                    callbacks=[recorder])
    assert recorder.calls[0] == "train_begin" and recorder.calls[-1] == "train_end"
    ends = [c for c in recorder.calls if c[0] == "epoch_end"]
    assert [e[1] for e in ends] == [0, 1]
    assert ends[0][2] == ["accuracy", "loss", "val_accuracy", "val_loss"]
    with pytest.raises(TypeError, match="Callback"):
        dense_classifier().fit(x, y, epochs=1, verbose=0, callbacks=[print])


def test_early_stopping_stops_and_restores_the_best_weights():
    x, y = synthetic_images(32, 8)
    model = dense_classifier(SGD(0.5))
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
    dense_classifier(SGD(0.1)).fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[checkpoint])
    saved = sorted(p.name for p in tmp_path.iterdir())
    assert saved and saved[0] == "best-01.npz"
    load_model(tmp_path / saved[-1])


def test_learning_rate_callbacks():
    x, y = synthetic_images(16, 8)
    model = dense_classifier(SGD(0.1))
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0,
                        callbacks=[LearningRateScheduler(lambda epoch, lr: 0.1 / (epoch + 1))])
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.1 / 3])
    model = dense_classifier(SGD(0.1))
    plateau = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=10.0)
    model.fit(x, y, batch_size=8, epochs=4, verbose=0, callbacks=[plateau])
    assert model.optimizer.current_learning_rate() < 0.1


def test_terminate_on_nan_and_csv_logger(tmp_path):
    x, y = synthetic_images(16, 8)
    log = tmp_path / "log.csv"
    model = dense_classifier(SGD(0.1))
    x = x.copy()
    x[:, :4] = 3e38  # inputs so large that logits, and so the loss, overflow
    with np.errstate(all="ignore"):
        history = model.fit(x, y, seed=0, batch_size=4, epochs=3, verbose=0,
                            terminate_on_nan=False, callbacks=[TerminateOnNaN(), CSVLogger(log)])
    assert len(history.history["loss"]) == 1
    rows = list(csv.DictReader(log.open()))
    assert rows[0]["epoch"] == "0" and "loss" in rows[0]


@pytest.mark.parametrize("filepath, message", [
    ("ckpt-{epoch:02d}-{accuracy_typo:.2f}.npz", "cannot be filled in"),
    ("ckpt-{epoch:q}.npz", "cannot be filled in"),
    ("ckpt-{epoch}.keras", "must end in .npz"),
])
def test_a_checkpoint_name_that_cannot_work_stops_fit_before_its_first_epoch(tmp_path, filepath,
                                                                            message):
    from minicnn.callbacks import ModelCheckpoint
    model = dense_classifier()
    x, y = np.random.default_rng(0).random((8, 8, 8, 1)), np.arange(8) % 4
    before = model.get_weights()
    with pytest.raises(ValueError, match=message):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[ModelCheckpoint(tmp_path / filepath)])
    for a, b in zip(before, model.get_weights()):  # no epoch ran
        np.testing.assert_array_equal(a, b)
