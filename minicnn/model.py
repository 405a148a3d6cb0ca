"""Sequential: a stack of layers with Keras' compile / fit / evaluate / predict / save."""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Iterable

import numpy as np

from . import config, losses, optimizers, saving
from .backends import get_backend
from .callbacks import Callback
from .feed import ArrayFeed
from .layers import LAYER_CLASSES, Input, Layer
from .layers.base import KernelLayer
from .metrics import TRAINING_METRICS
from .progress import Progbar, SlowStartNotice
from .tally import Tally
from .validation import as_array, as_finite, check_inputs, check_labels, check_positive_int

FORMAT_VERSION = 1
READ_EVERY = 0.1  # seconds between reads of the loss from a device during fit


def _flow_steps(flow) -> int:
    """Batches per epoch of an augmentation flow (``len`` or ``n / batch_size``)."""
    if hasattr(flow, "__len__"):
        return len(flow)
    if hasattr(flow, "n") and hasattr(flow, "batch_size"):
        return math.ceil(flow.n / flow.batch_size)
    raise ValueError(f"fit cannot tell how many batches make an epoch of this "
                     f"{type(flow).__name__}; pass steps_per_epoch=... (batches per epoch)")


def _warn_diverged(epoch: int, step: int, value: float) -> None:
    """fit stops on a non-finite loss (``terminate_on_nan``): say why, once."""
    warnings.warn(
        f"fit stopped at epoch {epoch + 1}, step {step + 1}: the loss became {value} (training "
        "diverged). The weights are those from before that batch. Try a lower learning rate, "
        "scaled inputs (e.g. x / 255) or check the data for extreme values.",
        RuntimeWarning, stacklevel=5)


class History:
    """What ``fit`` returns: ``history.history["val_accuracy"]`` is a list, one entry per epoch."""

    def __init__(self):
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def append(self, epoch: int, logs: dict[str, float]) -> None:
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)


class Sequential:
    """A linear stack of layers; the first one takes ``input_shape`` (no batch axis)."""

    def __init__(self, layers: Iterable[Layer] | None = None, name: str = "sequential"):
        self.name = name
        self.layers: list[Layer] = []
        self.optimizer: optimizers.Optimizer | None = None
        self.loss: losses.Loss | None = None
        self.metrics: list[str] = []
        self._placed_on = None
        self._input: Input | None = None
        self.stop_training = False
        for layer in layers or []:
            self.add(layer)

    # -- structure ----------------------------------------------------------------------

    def add(self, layer: Layer | Input) -> None:
        """Append a layer (its name is made unique inside the model, as Keras does).

        ``Input(shape)`` first, as in Keras, gives the shape to the next (first) layer.
        """
        if isinstance(layer, Input):
            if self.layers:
                raise ValueError("Input(...) must come first, before any layer")
            self._input = layer
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a minicnn layer, got {type(layer).__name__}")
        if self.built:
            raise ValueError("cannot add layers to a model whose weights are already built")
        if not self.layers and self._input is not None:
            layer.input_shape = self._input.shape
        names = {existing.name for existing in self.layers}
        base, k = layer.name, 0
        while layer.name in names:
            k += 1
            layer.name = f"{base}_{k}"
        self.layers.append(layer)

    @property
    def built(self) -> bool:
        return bool(self.layers) and all(layer.built for layer in self.layers)

    @property
    def input_shape(self) -> tuple[int, ...]:
        if not self.layers:
            raise ValueError("the model has no layers; add some first")
        shape = self.layers[0].input_shape
        if shape is None:
            raise ValueError("the first layer needs input_shape=..., e.g. input_shape=(28, 28, 1)")
        return shape

    def _shapes(self) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        """(input shape, output shape) of every layer, computed without building weights."""
        shapes, shape = [], self.input_shape
        for layer in self.layers:
            out = layer.compute_output_shape(shape)
            shapes.append((shape, out))
            shape = out
        return shapes

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self._shapes()[-1][1]

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """The layer called ``name``, or at position ``index``."""
        if (name is None) == (index is None):
            raise ValueError("get_layer needs exactly one of name= or index=")
        if index is not None:
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"no layer named {name!r}; the layers are "
                         f"{[layer.name for layer in self.layers]}")

    def build(self, seed: int | None = None) -> None:
        """Create every layer's weights (by their initialisers, e.g. glorot-uniform kernels
        and zero biases) from ``seed``."""
        rng = np.random.default_rng(seed)
        for layer, (in_shape, _) in zip(self.layers, self._shapes()):
            layer.build(in_shape, rng)
        self._placed_on = None

    def _ensure_built(self, seed: int | None = None) -> None:
        if not self.built:
            self.build(seed)

    def _place(self, backend) -> None:
        """Keep parameters and optimizer state in the active backend's memory, in floatx."""
        where = (backend, config.floatx())
        if self._placed_on == where:
            return
        for layer in self.layers:
            layer.place(backend)
        if self.optimizer is not None:
            self.optimizer.place(backend)
        self._placed_on = where

    def count_params(self, trainable: bool | None = None) -> int:
        """Number of parameters (only the trainable or non-trainable ones when asked)."""
        return sum(layer.count_params(shapes[0], trainable)
                   for layer, shapes in zip(self.layers, self._shapes()))

    def summary(self, print_fn=print) -> None:
        """Print layer, output shape and parameter count, as Keras does."""
        longest = max(len(f" {l.name} ({type(l).__name__})") for l in self.layers)
        widths = (max(29, longest + 2), 26, 10)  # Keras' widths, wider for long names
        rule = "_" * sum(widths)

        def row(*cells):
            return "".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()

        lines = [f'Model: "{self.name}"', rule, row(" Layer (type)", "Output Shape", "Param #"),
                 "=" * sum(widths)]
        for i, (layer, (in_shape, out_shape)) in enumerate(zip(self.layers, self._shapes())):
            shape = "(None, " + ", ".join(str(d) for d in out_shape) + ")"
            lines.append(row(f" {layer.name} ({type(layer).__name__})", shape,
                             f"{layer.count_params(in_shape):,}"))
            lines.append(rule if i < len(self.layers) - 1 else "=" * sum(widths))
        lines += [f"Total params: {self.count_params():,}",
                  f"Trainable params: {self.count_params(trainable=True):,}",
                  f"Non-trainable params: {self.count_params(trainable=False):,}", rule]
        for line in lines:
            print_fn(line)

    # -- weights ------------------------------------------------------------------------

    def get_weights(self) -> list[np.ndarray]:
        self._ensure_built()
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights) -> None:
        self._ensure_built()
        weights = list(weights)
        expected = sum(len(layer._weights()) for layer in self.layers)
        if len(weights) != expected:
            raise ValueError(f"expected {expected} weight arrays, got {len(weights)}")
        saved = [layer.get_weights() for layer in self.layers]
        try:
            for layer in self.layers:
                n = len(layer._weights())
                layer.set_weights(weights[:n])
                weights = weights[n:]
        except ValueError:
            for layer, old in zip(self.layers, saved):  # all or nothing
                layer.set_weights(old)
            raise

    # -- training -----------------------------------------------------------------------

    def compile(self, optimizer="adam", loss="sparse_categorical_crossentropy", metrics=None):
        """Choose the optimizer ("adam", "sgd" or an instance), loss and metrics (["accuracy"]).

        An optimizer instance keeps per-parameter state, so it belongs to one model.
        """
        metrics = [metrics] if isinstance(metrics, str) else list(metrics or [])
        unknown = [m for m in metrics if m not in TRAINING_METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; expected some of "
                             f"{sorted(TRAINING_METRICS)}")
        opt, loss_ = optimizers.get(optimizer), losses.get(loss)
        if metrics and not loss_.categorical:
            raise ValueError(f"{metrics} need a classification loss, not {loss_.name!r}")
        opt.attach(self)
        self.optimizer, self.loss = opt, loss_
        self.metrics = list(dict.fromkeys(TRAINING_METRICS[m][0] for m in metrics))
        self._metric_k = {TRAINING_METRICS[m][0]: TRAINING_METRICS[m][1] for m in metrics}
        self._placed_on = None

    def _require_compiled(self) -> None:
        if self.loss is None:
            raise RuntimeError("compile the model first: model.compile(optimizer, loss, metrics)")

    def _prepare(self, x, y, what: str = "x") -> tuple[np.ndarray, np.ndarray]:
        """Check x and y and return them as float arrays in the compute dtype (copies)."""
        x = check_inputs(x, self.input_shape, config.dtype(), what)
        targets = check_labels(y, len(x), self.output_shape[0], self.loss.sparse,
                               self.loss.categorical)
        return x, targets.astype(config.dtype())

    @property
    def _fused(self) -> bool:
        return self.loss.fuses is not None and self.layers[-1].activation == self.loss.fuses

    def _stages(self) -> list[tuple[int, ...]]:
        """The layers' indices in the order they run: one at a time, except a Conv2D and the
        MaxPool2D after it that it ``fuses_with``, which run as one stage (one kernel pair)."""
        stages, i, layers = [], 0, self.layers
        while i < len(layers):
            fused = i + 1 < len(layers) and layers[i].fuses_with(layers[i + 1])
            stages.append((i, i + 1) if fused else (i,))
            i += len(stages[-1])
        return stages

    def _forward(self, x, training: bool, activate_last: bool = True):
        last = len(self.layers) - 1
        for stage in self._stages():
            layer = self.layers[stage[0]]
            if len(stage) == 2:
                x = layer.forward_pooled(x, self.layers[stage[1]])
            else:
                x = layer.forward(x, training=training, activate=activate_last or stage[0] < last)
        return x

    def _step_loss(self, tally: Tally, x, y, training: bool, weights=None):
        """Forward a device batch into the step ``tally`` has begun: its data loss (no weight
        penalties, see ``_penalty``) and metric counts go there, rows weighted by ``weights``
        (N,) if given. Returns d loss / d output."""
        fused = self._fused
        out = self._forward(x, training, activate_last=not fused)
        backend = get_backend()
        if (fused and self.loss.fuses == "softmax" and set(self._metric_k.values()) <= {1}
                and weights is None):
            # softmax cross-entropy with plain accuracy: the loss kernel sums the loss and
            # counts the hits into the tally's row, left in the backend's memory
            return backend.softmax_cross_entropy_totals(out, y, tally.slot(), tally.halted)
        value, grad = (self.loss.fused if fused else self.loss)(out, y, weights)
        tally.add(value * len(x), {
            name: backend.count_correct(out, y, 0.0 if fused else 0.5) if k == 1
            else backend.count_top_k(out, y, k) for name, k in self._metric_k.items()})
        return grad

    def _penalty(self) -> float:
        """The kernel_regularizer penalties of every layer (part of the reported loss)."""
        return sum(layer.penalty() for layer in self.layers if isinstance(layer, KernelLayer))

    def _tally(self, steps: int = 1) -> Tally:
        return Tally(get_backend(), steps, self.metrics)

    def compute_loss(self, x, y, training: bool = True) -> float:
        """Loss of one batch (already in backend memory, y as the model's targets), weight
        penalties included; nothing changes but BatchNorm's moving statistics in training."""
        tally = self._tally()
        tally.begin(len(x))
        self._step_loss(tally, x, y, training)
        tally.read()
        return tally.last_loss + self._penalty()

    def compute_gradients(self, x, y, sample_weight=None) -> float:
        """Loss of one batch (already in backend memory, y as the model's targets) and the
        gradients of every layer's parameters into ``layer.grads``. Returns the loss,
        weight penalties included; the weights do not change. After a NaN or inf loss the
        gradients mean nothing (``train_step`` then applies none)."""
        tally = self._tally()
        tally.begin(len(x))
        self._gradients(tally, x, y, sample_weight)
        tally.read()
        return tally.last_loss

    def _gradients(self, tally: Tally, x, y, sample_weight=None) -> None:
        """compute_gradients into the step ``tally`` has begun (loss and metric counts)."""
        grad = self._step_loss(tally, x, y, True, sample_weight)
        if tally.known_bad():
            return
        # Layers before the first one with weights need no gradient: stop there.
        first = next((i for i, layer in enumerate(self.layers) if layer.params), len(self.layers))
        for stage in reversed(self._stages()):
            i = stage[0]
            if i < first:
                break
            if len(stage) == 2:
                grad = self.layers[i].backward_pooled(grad, need_input_grad=i > first)
            else:
                grad = self.layers[i].backward(grad, need_input_grad=i > first)
        penalty = sum(layer.last_penalty for layer in self.layers
                      if isinstance(layer, KernelLayer))
        tally.add(penalty * len(x))

    def train_step(self, x, y, sample_weight=None) -> tuple[float, dict]:
        """One optimizer step on a batch already in backend memory: ``compute_gradients``,
        then the update; returns (loss, metric counts). ``sample_weight`` (N,) host array
        weights the rows of the loss. A non-finite loss changes nothing."""
        tally = self._one_step(x, y, sample_weight)
        return tally.last_loss, tally.counts

    def _one_step(self, x, y, sample_weight=None) -> Tally:
        """train_step in a tally of its own, read back."""
        tally = self._tally()
        self._train_step(tally, x, y, sample_weight)
        tally.read()
        return tally

    def _train_step(self, tally: Tally, x, y, sample_weight=None) -> None:
        """train_step as a new step of ``tally``. Its loss may stay in the backend's memory
        (read later): the update is then skipped there if the loss is NaN or inf."""
        tally.begin(len(x), mark=self.optimizer.iterations)
        self._gradients(tally, x, y, sample_weight)
        if not tally.known_bad():
            self.optimizer.apply(self.layers, tally.halted)

    def fit(self, x, y=None, batch_size: int = 32, epochs: int = 1, verbose: int = 1,
            callbacks=None, validation_data=None, validation_split: float = 0.0,
            shuffle: bool = True, class_weight: dict | None = None, sample_weight=None,
            seed: int | None = None, steps_per_epoch: int | None = None,
            terminate_on_nan: bool = True) -> History:
        """Train for ``epochs``; ``x`` is an array (with labels ``y``) or an augmentation flow.

        ``seed`` fixes the weight initialisation (if not built yet), the shuffling and the
        Dropout masks. ``sample_weight`` (N,) and ``class_weight`` ({class: weight}) weight
        each sample's loss (Keras' meaning; both multiply when given together).
        ``callbacks`` are ``minicnn.callbacks.Callback`` objects (Keras' hooks).
        Returns a History whose ``history`` holds loss/metrics (and val_*) per epoch.
        A batch whose loss is NaN or inf is never applied; ``terminate_on_nan`` (default)
        then stops training with a warning, keeping the weights and the history so far.
        (On a GPU the loss is read back once per progress update; the steps queued after a
        bad one change no weights either, only BatchNorm's moving statistics see them.)
        """
        self._require_compiled()
        check_positive_int(epochs, "epochs")
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
        callbacks = list(callbacks or [])
        bad = [c for c in callbacks if not isinstance(c, Callback)]
        if bad:
            raise TypeError(f"callbacks must be minicnn.callbacks.Callback objects, got {bad}")
        flow = hasattr(x, "__next__")
        validation = None  # (x_val, y_val), prepared
        if flow:
            if y is not None:
                raise ValueError("pass labels to the flow, not to fit, when x is a flow")
            if validation_split:
                raise ValueError("validation_split needs arrays; with a flow or generator pass "
                                 "validation_data=(x_val, y_val) instead")
            if sample_weight is not None or class_weight is not None:
                raise ValueError("sample_weight and class_weight need arrays, not a flow")
            weights = None
            steps = check_positive_int(steps_per_epoch or _flow_steps(x), "steps_per_epoch")
        else:
            if y is None:
                raise ValueError("fit needs labels y when x is an array")
            check_positive_int(batch_size, "batch_size")
            if not 0.0 <= validation_split < 1.0:
                raise ValueError(f"validation_split must be in [0, 1), got {validation_split!r}")
            x, y = self._prepare(x, y)
            weights = self._sample_weights(y, sample_weight, class_weight)
            if validation_split and validation_data is None:
                cut = math.floor(len(x) * (1.0 - validation_split))  # Keras: the last ones
                if cut <= 0 or cut == len(x):
                    raise ValueError("validation_split leaves no training or no validation data")
                x, y, validation = x[:cut], y[:cut], (x[cut:], y[cut:])
                weights = None if weights is None else weights[:cut]
            steps = math.ceil(len(x) / batch_size)
        if validation_data is not None:
            if len(validation_data) != 2:
                raise ValueError("validation_data must be a tuple (x_val, y_val)")
            validation = self._prepare(*validation_data, what="validation x")

        self._ensure_built(seed)
        for i, layer in enumerate(self.layers):  # Dropout masks: reproducible from seed
            if layer.uses_rng and getattr(layer, "seed", None) is None:
                layer.rng = np.random.default_rng(None if seed is None else [seed, i])
        backend = get_backend()
        self._place(backend)
        with backend.session():
            # arrays go to the backend's memory once, not batch by batch
            feed = x if flow else ArrayFeed(backend, x, y, weights, batch_size)
            if validation is not None:
                validation = ArrayFeed(backend, *validation, None, batch_size)
            return self._fit_loop(feed, steps, epochs, verbose, shuffle, seed, validation,
                                  terminate_on_nan, callbacks)

    def _sample_weights(self, targets, sample_weight, class_weight) -> np.ndarray | None:
        """Per-sample loss weights (N,) from sample_weight and class_weight, or None."""
        if sample_weight is None and class_weight is None:
            return None
        weights = np.ones(len(targets))
        if sample_weight is not None:
            sample_weight = as_finite(as_array(sample_weight, "sample_weight"), np.float64,
                                      "sample_weight")
            if sample_weight.shape != (len(targets),) or (sample_weight < 0).any():
                raise ValueError(f"sample_weight must be {len(targets)} numbers >= 0, one per "
                                 f"sample; got shape {sample_weight.shape}")
            weights *= sample_weight
        if class_weight is not None:
            if not self.loss.categorical or not isinstance(class_weight, dict):
                raise ValueError("class_weight must be a dict {class index: weight} and needs "
                                 "a classification loss")
            labels = (targets.argmax(axis=1) if targets.shape[1] > 1
                      else (targets[:, 0] > 0.5).astype(int))
            table = np.ones(max(targets.shape[1], 2))
            for label, weight in class_weight.items():
                if not (0 <= int(label) < len(table)) or not float(weight) >= 0:
                    raise ValueError(f"class_weight entry {label!r}: {weight!r} is not a class "
                                     "index with a weight >= 0")
                table[int(label)] = float(weight)
            weights *= table[labels]
        return weights

    def _fit_loop(self, feed, steps, epochs, verbose, shuffle, seed, validation,
                  terminate_on_nan, callbacks) -> History:
        backend = get_backend()
        flow = not isinstance(feed, ArrayFeed)
        rng = np.random.default_rng(seed)
        history = History()
        notice = getattr(backend.module, "COMPILE_NOTICE", None) if verbose else None
        batch_hooks = [c for c in callbacks if c.has_batch_hooks()]
        # Reading the loss back makes the host wait for the device: on a GPU, fit reads
        # once per progress update (unless a callback or terminate_on_nan=False needs
        # every step); on the CPU reading is free.
        read_every_step = not backend.on_device or bool(batch_hooks) or not terminate_on_nan
        tally = Tally(backend, steps, self.metrics)
        self.stop_training = False
        for callback in callbacks:
            callback.set_model(self)
            callback.on_train_begin()
        for epoch in range(epochs):
            for callback in callbacks:
                callback.on_epoch_begin(epoch)
            if verbose:
                print(f"Epoch {epoch + 1}/{epochs}")
            bar = Progbar(steps, verbose)
            if not flow:
                feed.shuffle(rng.permutation(feed.size) if shuffle else None)
            tally.restart()
            last_read = time.perf_counter()
            for step in range(steps):
                for callback in batch_hooks:
                    callback.on_train_batch_begin(step)
                if flow:
                    (xb, yb), wb = self._prepare(*next(feed)), None
                else:
                    xb, yb, wb = feed.batch(step)
                slow_start = notice and epoch == 0 and step == 0  # may compile kernels
                with backend.step_buffers(self, "train", len(xb)), \
                        SlowStartNotice(notice if slow_start else None, after=2.0):
                    self._train_step(tally, backend.to_device(xb), backend.to_device(yb), wb)
                now = time.perf_counter()
                if not (read_every_step or step == steps - 1 or now - last_read >= READ_EVERY):
                    continue
                tally.read()
                last_read = now
                logs = tally.logs()
                for callback in batch_hooks:
                    callback.on_train_batch_end(step, {**logs, "batch_loss": tally.last_loss})
                if tally.first_bad is not None:
                    if terminate_on_nan:
                        _warn_diverged(epoch, tally.first_bad, tally.last_loss)
                        # the device skipped every update from that step on: count none
                        self.optimizer.iterations = tally.mark(tally.first_bad)
                        self.stop_training = True
                    else:
                        tally.forgive()
                if self.stop_training:
                    break
                bar.update(step + 1, logs)
            logs = tally.logs()
            if validation is not None and math.isfinite(tally.loss_sum):
                with backend.step_buffers(self, "validate", validation.size):
                    logs.update(self._evaluate_feed(validation, prefix="val_"))
            for callback in callbacks:
                callback.on_epoch_end(epoch, logs)
            bar.finish(logs, tally.steps_read)
            history.append(epoch, logs)
            if self.stop_training:
                break
        for callback in callbacks:
            callback.on_train_end()
        return history

    def _batch_logs(self, logs: dict, return_dict: bool):
        """Keras' return convention: the dict, or [loss, metric, ...] (a bare loss alone)."""
        if return_dict:
            return logs
        values = list(logs.values())
        return values if len(values) > 1 else values[0]

    def train_on_batch(self, x, y, sample_weight=None, return_dict: bool = False):
        """One optimizer step on one batch of host arrays (checked, moved to the backend);
        returns this batch's ``[loss, metric, ...]`` (or a dict), as Keras does."""
        self._require_compiled()
        x, y = self._prepare(x, y)
        weights = self._sample_weights(y, sample_weight, None)
        self._ensure_built()
        backend = get_backend()
        self._place(backend)
        with backend.session(), backend.step_buffers(self, "train", len(x)):
            tally = self._one_step(backend.to_device(x), backend.to_device(y), weights)
        return self._batch_logs(tally.logs(), return_dict)

    def test_on_batch(self, x, y, sample_weight=None, return_dict: bool = False):
        """``evaluate`` of one batch: its ``[loss, metric, ...]`` (or a dict), no update."""
        return self.evaluate(x, y, batch_size=_ONE_BATCH, sample_weight=sample_weight,
                             return_dict=return_dict)

    def predict_on_batch(self, x) -> np.ndarray:
        """``predict`` of one batch, as a host array."""
        return self.predict(x, batch_size=_ONE_BATCH)

    # -- inference ----------------------------------------------------------------------

    def _evaluate_feed(self, feed: ArrayFeed, prefix: str = "") -> dict:
        """Loss (weight penalties included) and metrics over every batch of ``feed``."""
        backend = get_backend()
        tally = Tally(backend, len(feed), self.metrics)
        for step in range(len(feed)):
            xb, yb, wb = feed.batch(step)
            with backend.step_buffers(self, "test", len(xb)):
                tally.begin(len(xb))
                self._step_loss(tally, backend.to_device(xb), backend.to_device(yb), False, wb)
        tally.read(stop_at_bad=False)
        logs = tally.logs(prefix)
        logs[prefix + "loss"] += self._penalty()
        return logs

    def evaluate(self, x, y, batch_size: int = 32, verbose: int = 0, sample_weight=None,
                 return_dict: bool = False):
        """``[loss, metric, ...]`` (just the loss when compiled without metrics), or with
        ``return_dict`` ``{"loss": ..., "accuracy": ...}``; ``sample_weight`` weights the loss."""
        self._require_compiled()
        check_positive_int(batch_size, "batch_size")
        x, y = self._prepare(x, y)
        weights = self._sample_weights(y, sample_weight, None)
        self._ensure_built()
        backend = get_backend()
        self._place(backend)
        with backend.session(), backend.step_buffers(self, "evaluate", len(x)):
            logs = self._evaluate_feed(ArrayFeed(backend, x, y, weights, batch_size))
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        return self._batch_logs(logs, return_dict)

    def predict(self, x, batch_size: int = 32, verbose: int = 0) -> np.ndarray:
        """Outputs for every sample of ``x`` (probabilities after a softmax), as a host array."""
        check_positive_int(batch_size, "batch_size")
        x = check_inputs(x, self.input_shape, config.dtype())
        self._ensure_built()
        backend = get_backend()
        self._place(backend)
        out = []
        with backend.session():
            for start in range(0, len(x), batch_size):
                batch = x[start:start + batch_size]
                with backend.step_buffers(self, "predict", len(batch)):
                    out.append(backend.to_host(self._forward(backend.to_device(batch), False)))
        return np.concatenate(out)

    # -- persistence --------------------------------------------------------------------

    def get_config(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "layers": [{"class": type(l).__name__, "config": l.get_config(),
                        "trainable": l.trainable} for l in self.layers],
            "optimizer": self.optimizer.get_config() if self.optimizer else None,
            "loss": self.loss.name if self.loss else None,
            "metrics": self.metrics,
            "optimizer_iterations": self.optimizer.iterations if self.optimizer else 0,
        }

    def _expected_arrays(self) -> dict[str, tuple[int, ...]]:
        """Every array a saved file of this model holds, with its shape (optimizer state may
        be absent for a parameter never updated), computed without building anything."""
        shapes = {}
        slots = self.optimizer.slot_names if self.optimizer else ()
        for i, (layer, (in_shape, _)) in enumerate(zip(self.layers, self._shapes())):
            for key, spec in layer.weight_specs(in_shape).items():
                shapes[f"weights/{i}/{key}"] = spec.shape
                for slot in slots if spec.trainable else ():
                    shapes[f"optimizer/{i}/{key}/{slot}"] = spec.shape
        return shapes

    def save(self, path: str | os.PathLike) -> None:
        """Write architecture, weights and optimizer state to one ``.npz`` file, atomically.

        Non-finite weights (a diverged run) are refused, and the existing file is kept.
        """
        if not os.fspath(path).endswith(".npz"):
            raise ValueError(f"minicnn saves models as .npz files, not {os.fspath(path)!r} "
                             "(Keras' .keras and .h5 formats are not supported); use a name "
                             "ending in .npz")
        self._ensure_built()
        arrays = {"config": np.frombuffer(json.dumps(self.get_config()).encode(), np.uint8)}
        for i, layer in enumerate(self.layers):
            for key, value in zip(layer.weight_specs(layer.input_shape), layer.get_weights()):
                arrays[f"weights/{i}/{key}"] = value
        if self.optimizer is not None:
            for key, value in self.optimizer.state_arrays().items():
                arrays[f"optimizer/{key}"] = value
        for key, value in arrays.items():
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise ValueError(f"cannot save {os.fspath(path)!r}: {key} contains NaN or inf "
                                 "(the training diverged); the existing file was left as it was")
        saving.atomic_write(path, lambda f: np.savez(f, **arrays))


_ONE_BATCH = 1 << 62  # a batch size no array reaches: the *_on_batch methods' single batch
_CONFIG_BYTES = 1 << 20  # a model's JSON config is a few KB; more is not a minicnn file


def _checked_config(cfg) -> dict:
    """The parsed JSON config, with the type of every field checked."""
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise ValueError(f"config: {what}")

    need(isinstance(cfg, dict), "not a JSON object")
    need(cfg.get("format_version") == FORMAT_VERSION,
         f"unsupported format_version {cfg.get('format_version')!r}")
    need(isinstance(cfg.get("name"), str), "name must be a string")
    need(isinstance(cfg.get("layers"), list) and cfg["layers"], "layers must be a list")
    for spec in cfg["layers"]:
        need(isinstance(spec, dict) and spec.get("class") in LAYER_CLASSES
             and isinstance(spec.get("config"), dict)
             and isinstance(spec.get("trainable", True), bool), f"bad layer entry {spec!r:.80}")
    need(cfg.get("loss") is None or isinstance(cfg["loss"], str), "loss must be a string")
    need(cfg.get("optimizer") is None or (isinstance(cfg["optimizer"], dict)
                                          and isinstance(cfg["optimizer"].get("name"), str)),
         "optimizer must be an object with a name")
    need(isinstance(cfg.get("metrics"), list)
         and all(isinstance(m, str) for m in cfg["metrics"]), "metrics must be a list of names")
    iterations = cfg.get("optimizer_iterations")
    need(type(iterations) is int and iterations >= 0,
         "optimizer_iterations must be an int >= 0")
    return cfg


def _model_from_config(cfg: dict) -> Sequential:
    """The model a config describes: layers made and compiled, no weights allocated yet."""
    model = Sequential(name=cfg["name"])
    for spec in cfg["layers"]:
        layer = LAYER_CLASSES[spec["class"]](**spec["config"])
        layer.trainable = spec.get("trainable", True)
        model.add(layer)
    if cfg["loss"] is not None:
        if cfg["optimizer"] is None:
            raise ValueError("config: a compiled model needs an optimizer")
        model.compile(optimizers.from_config(cfg["optimizer"]), cfg["loss"], cfg["metrics"])
    return model


def load_model(path: str | os.PathLike) -> Sequential:
    """Rebuild a model saved by ``Sequential.save`` (weights and optimizer state included).

    Every array is checked against what the config implies (names, shapes, dtypes, sizes)
    before anything is allocated, and for NaN/inf in the current floatx after. A bad file
    raises ValueError naming it; nothing half-built is returned.
    """
    path = os.fspath(path)
    try:
        with saving.NpzArchive(path) as archive:
            cfg = _checked_config(json.loads(archive.small_bytes("config", _CONFIG_BYTES)))
            model = _model_from_config(cfg)
            expected = model._expected_arrays()
            stored = archive.names() - {"config"}
            unknown = stored - set(expected)
            if unknown:
                raise ValueError(f"unexpected arrays {sorted(unknown)[:5]}")
            weights = {k: v for k, v in expected.items() if k.startswith("weights/")}
            archive.check(weights)
            state = {k: v for k, v in expected.items()
                     if k in stored and k.startswith("optimizer/")}
            archive.check(state)
            _check_complete_slots(state, model)
            values = {key: as_finite(archive.array(key), config.dtype(), key)
                      for key in [*weights, *state]}
        model.build()
        model.set_weights([values[key] for key in weights])
        if model.optimizer is not None:
            model.optimizer.load_state(cfg["optimizer_iterations"],
                                       {k.removeprefix("optimizer/"): values[k] for k in state})
    except FileNotFoundError:
        raise
    except (*saving.BAD_FILE_ERRORS, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot load model from {path!r}: the file is corrupt, truncated or "
                         f"not a minicnn model ({type(exc).__name__}: {exc})") from None
    return model


def _check_complete_slots(state: dict, model: Sequential) -> None:
    """Each parameter has all of its optimizer's slots or none (none: never updated)."""
    per_param: dict[str, int] = {}
    for key in state:
        param = key.rsplit("/", 1)[0]
        per_param[param] = per_param.get(param, 0) + 1
    wanted = len(model.optimizer.slot_names) if model.optimizer else 0
    partial = [p for p, n in per_param.items() if n != wanted]
    if partial:
        raise ValueError(f"incomplete optimizer state for {partial[:3]}")
