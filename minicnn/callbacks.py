"""Callbacks with Keras' names and hooks: ``model.fit(..., callbacks=[EarlyStopping()])``.

``fit`` calls, on every callback in order: ``on_train_begin``, then per epoch
``on_epoch_begin``, per step ``on_train_batch_begin`` / ``on_train_batch_end`` (logs: the
running loss and metrics of the epoch; only on callbacks that define them: on a GPU
``fit`` then reads the loss back every step), ``on_epoch_end`` (logs: the epoch's, ``val_*``
included), and finally ``on_train_end``. Setting ``model.stop_training = True`` ends
training after the current step.
"""

from __future__ import annotations

import csv
import inspect
import math
import os
import string
import sys
import warnings

import numpy as np

from .backends import get_backend
from .fusion import layers_of
from .optimizers import LearningRateSchedule


class Callback:
    """Base class: override the hooks you need; ``self.model`` is the model being trained."""

    def __init__(self):
        self.model = None
        self.params: dict = {}

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        """What fit tells every callback before training (Keras' ``params``): ``epochs``,
        ``steps``, ``verbose`` and ``validation`` (whether val_* logs will exist)."""
        self.params = params

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch: int, logs=None): ...
    def on_epoch_end(self, epoch: int, logs=None): ...
    def on_train_batch_begin(self, batch: int, logs=None): ...
    def on_train_batch_end(self, batch: int, logs=None): ...

    def has_batch_hooks(self) -> bool:
        """This callback overrides a per-step hook (fit then reads the loss every step)."""
        return any(getattr(type(self), hook) is not getattr(Callback, hook)
                   for hook in ("on_train_batch_begin", "on_train_batch_end"))


def _improvement(mode: str, monitor: str):
    """(is a better than b by min_delta?) for mode "min", "max" or "auto" (max for accuracy)."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        mode = "max" if "acc" in monitor else "min"
    if mode == "min":
        return lambda a, b, delta: a < b - delta, math.inf
    return lambda a, b, delta: a > b + delta, -math.inf


def _monitored(logs: dict, monitor: str, who: str) -> float | None:
    if monitor not in (logs or {}):
        print(f"{who}: metric {monitor!r} is not in the logs (available: "
              f"{sorted(logs or {})}); skipping", file=sys.stderr)
        return None
    return logs[monitor]


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs;
    ``restore_best_weights`` puts back the weights of the best epoch when training ends."""

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 verbose: int = 0, mode: str = "auto", baseline: float | None = None,
                 restore_best_weights: bool = False, start_from_epoch: int = 0):
        super().__init__()
        self.monitor, self.min_delta, self.patience = monitor, abs(min_delta), patience
        self.verbose, self.baseline = verbose, baseline
        self.restore_best_weights, self.start_from_epoch = restore_best_weights, start_from_epoch
        self._better, self._worst = _improvement(mode, monitor)

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best = self._worst
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        """Keras 3's rule: the best epoch so far is kept (its weights too) even when it does
        not beat ``baseline``; only beating both resets the patience count."""
        value = _monitored(logs, self.monitor, "EarlyStopping")
        if value is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self.model.get_weights(), epoch
        self.wait += 1
        if self._better(value, self.best, self.min_delta):
            self.best, self.best_epoch = value, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._better(value, self.baseline, self.min_delta):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"Restoring model weights from the end of the best epoch: "
                      f"{self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the model after every epoch to ``filepath`` (which may contain ``{epoch}`` and
    log names, e.g. ``"ckpt-{epoch:02d}-{val_loss:.3f}.npz"``); ``save_best_only`` saves
    only when ``monitor`` improves."""

    def __init__(self, filepath: str | os.PathLike, monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, mode: str = "auto"):
        super().__init__()
        self.filepath, self.monitor, self.verbose = os.fspath(filepath), monitor, verbose
        self.save_best_only = save_best_only
        self._better, self.best = _improvement(mode, monitor)

    def on_train_begin(self, logs=None):
        fields = {name.split(".")[0].split("[")[0]
                  for _, name, _, _ in string.Formatter().parse(self.filepath) if name}
        missing = sorted(f for f in fields if f.startswith("val_"))
        if missing and not self.params.get("validation", True):
            raise ValueError(f"ModelCheckpoint's filepath {self.filepath!r} names {missing}, "
                             "but this fit has no validation data; pass validation_data or "
                             "validation_split, or name other logs")
        # what every epoch's name will be made of, tried now: a mistake in the name would
        # otherwise end the fit after its first epoch's work
        logs = ["loss", *self.model.metrics]
        sample = {name: 0.0 for name in logs + [f"val_{name}" for name in logs]}
        try:
            path = self.filepath.format(epoch=1, **sample)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"ModelCheckpoint's filepath {self.filepath!r} cannot be filled "
                             f"in ({type(exc).__name__}: {exc}); it may name {{epoch}} and "
                             f"{sorted(sample)}, e.g. 'ckpt-{{epoch:02d}}.npz'") from None
        if not path.endswith(".npz"):
            raise ValueError(f"ModelCheckpoint's filepath {self.filepath!r} must end in .npz "
                             "(minicnn saves models as .npz files)")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)  # as Keras does
        if self.save_best_only:
            value = _monitored(logs, self.monitor, "ModelCheckpoint")
            if value is None or not self._better(value, self.best, 0.0):
                return
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to "
                      f"{value:.5f}, saving model to {path}")
            self.best = value
        self.model.save(path)


def _require_plain_learning_rate(optimizer, who: str) -> None:
    """A callback that sets the learning rate needs a number there, not a schedule (which
    it would silently replace): refused before training starts, as Keras does."""
    if isinstance(optimizer.learning_rate, LearningRateSchedule):
        raise TypeError(f"{who} sets the learning rate, but this optimizer's is a schedule "
                        f"({type(optimizer.learning_rate).__name__}); use one or the other")


class LearningRateScheduler(Callback):
    """At the start of each epoch set the learning rate to ``schedule(epoch, lr)``, or
    ``schedule(epoch)`` for a one-argument function (Keras calls either)."""

    def __init__(self, schedule, verbose: int = 0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"schedule must be a function schedule(epoch) or "
                            f"schedule(epoch, lr), got {schedule!r:.80}")
        self.schedule, self.verbose = schedule, verbose
        try:
            self._with_lr = len(inspect.signature(schedule).parameters) != 1
        except (TypeError, ValueError):  # a builtin without a signature: Keras' two arguments
            self._with_lr = True

    def on_train_begin(self, logs=None):
        _require_plain_learning_rate(self.model.optimizer, "LearningRateScheduler")

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        lr = float(self.schedule(epoch, optimizer.current_learning_rate()) if self._with_lr
                   else self.schedule(epoch))
        optimizer.set_learning_rate(lr)
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = self.model.optimizer.current_learning_rate()


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved for
    ``patience`` epochs (then wait ``cooldown`` epochs), never below ``min_lr``."""

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 verbose: int = 0, mode: str = "auto", min_delta: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0.0):
        super().__init__()
        if not 0.0 < factor < 1.0:
            raise ValueError(f"ReduceLROnPlateau factor must be in (0, 1), got {factor!r}")
        self.monitor, self.factor, self.patience, self.verbose = monitor, factor, patience, verbose
        self.min_delta, self.cooldown, self.min_lr = min_delta, cooldown, min_lr
        self._better, self._worst = _improvement(mode, monitor)

    def on_train_begin(self, logs=None):
        _require_plain_learning_rate(self.model.optimizer, "ReduceLROnPlateau")
        self.best, self.wait, self.cooldown_left = self._worst, 0, 0

    def on_epoch_end(self, epoch, logs=None):
        optimizer = self.model.optimizer
        if logs is not None:
            logs["learning_rate"] = optimizer.current_learning_rate()
        value = _monitored(logs, self.monitor, "ReduceLROnPlateau")
        if value is None:
            return
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if self._better(value, self.best, self.min_delta):
            self.best, self.wait = value, 0
        elif self.cooldown_left == 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = optimizer.current_learning_rate()
                new = max(old * self.factor, self.min_lr)
                if new < old:
                    optimizer.set_learning_rate(new)
                    if self.verbose:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate "
                              f"to {new}.")
                self.cooldown_left, self.wait = self.cooldown, 0


class TerminateOnNaN(Callback):
    """Stop training as soon as a step's loss is NaN or inf (that step is not applied)."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("batch_loss")
        if loss is not None and not np.isfinite(loss):
            print(f"Batch {batch}: invalid loss, terminating training")
            self.model.stop_training = True


class CSVLogger(Callback):
    """Write each epoch's logs as a row of a CSV file (``append`` keeps earlier rows)."""

    def __init__(self, filename: str | os.PathLike, separator: str = ",", append: bool = False):
        super().__init__()
        self.filename, self.separator, self.append = os.fspath(filename), separator, append
        self._file = self._writer = None

    def on_train_begin(self, logs=None):
        exists = self.append and os.path.exists(self.filename) and \
            os.path.getsize(self.filename) > 0
        self._file = open(self.filename, "a" if self.append else "w", newline="")
        self._header_written = exists

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch, **(logs or {})}
        if self._writer is None:  # the first epoch's logs are the columns, as in Keras
            self._writer = csv.DictWriter(self._file, fieldnames=list(row), restval="NA",
                                          extrasaction="ignore", delimiter=self.separator)
            if not self._header_written:
                self._writer.writeheader()
        new = [key for key in row if key not in self._writer.fieldnames]
        if new:
            warnings.warn(f"CSVLogger: {new} appeared after the first epoch and are not in "
                          f"{self.filename!r}, whose columns the first epoch fixed",
                          RuntimeWarning, stacklevel=2)
        self._writer.writerow(row)
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
        self._file = self._writer = None


class LayerStats(Callback):
    """Every ``every`` training steps, per layer: the mean, standard deviation, fraction of
    exact zeros and a fixed-bin histogram of its activations and of its weights' gradients
    (fast.ai's activation statistics; Keras' TensorBoard ``histogram_freq``, in memory).

    Activations are those of the training step itself, as the model ran it: a layer that
    runs fused with the next (``fusion.plan``: a Conv2D and its MaxPool2D, a
    BatchNormalization and its ReLU) is recorded through the stage's output, under
    "conv2d+max_pool2d". ``records`` holds one dict per (step, layer, kind) with ``step``,
    ``layer``, ``kind`` ("activation" or "gradient"), ``mean``, ``std``, ``zeros`` and
    ``histogram`` (counts in ``bins`` equal bins over ``value_range``, values outside it
    counted in the end bins); ``path`` also writes them as CSV.
    ``plotting.plot_layer_stats`` draws them.
    """

    def __init__(self, every: int = 10, bins: int = 40, value_range=(-3.0, 3.0),
                 path: str | os.PathLike | None = None):
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a whole number of steps >= 1, got {every!r}")
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
            raise ValueError(f"bins must be an int >= 1, got {bins!r}")
        low, high = value_range
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"value_range must be two finite numbers, low < high, got "
                             f"{value_range!r}")
        self.every, self.bins, self.value_range = every, bins, (float(low), float(high))
        self.edges = np.linspace(low, high, bins + 1)
        self.path = None if path is None else os.fspath(path)
        self.records: list[dict] = []

    def on_train_begin(self, logs=None):
        self.records, self._step = [], 0

    def summarize(self, values) -> dict:
        """The statistics of one array (float64): mean, std, zeros, histogram."""
        values = np.asarray(values, dtype=np.float64).ravel()
        clipped = np.clip(values, *self.value_range)
        return {"mean": float(values.mean()), "std": float(values.std()),
                "zeros": float(np.mean(values == 0)),
                "histogram": np.histogram(clipped, bins=self.edges)[0]}

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if (self._step - 1) % self.every:
            return
        backend = get_backend()
        for stage, output in zip(self.model.stages(), self.model.stage_outputs):
            name = "+".join(layer.name for layer in layers_of(stage))
            self._record(name, "activation", backend.to_host(output))
            for owner in layers_of(stage):
                grads = [backend.to_host(g) for g in owner.grads.values() if g is not None]
                if grads:
                    self._record(owner.name, "gradient",
                                 np.concatenate([g.ravel() for g in grads]))

    def _record(self, layer: str, kind: str, values) -> None:
        self.records.append({"step": self._step - 1, "layer": layer, "kind": kind,
                             **self.summarize(values)})

    def on_train_end(self, logs=None):
        if self.path is None:
            return
        folder = os.path.dirname(self.path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        with open(self.path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["step", "layer", "kind", "mean", "std", "zeros",
                             *(f"bin_{k}" for k in range(self.bins))])
            for r in self.records:
                writer.writerow([r["step"], r["layer"], r["kind"], r["mean"], r["std"],
                                 r["zeros"], *r["histogram"]])
