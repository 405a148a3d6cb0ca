"""Training and inference: Keras' compile / fit / evaluate / predict, and the step engine
under them (forward through the stages ``fusion.plan`` makes, the loss, backward, the
update). ``Model`` and ``Sequential`` inherit all of it from ``Trainer``."""

from __future__ import annotations

import contextlib
import math
import numbers
import warnings
from inspect import isgeneratorfunction

import numpy as np

from .. import config, fusion, inspect, losses, optimizers
from ..backends import get_backend
from ..callbacks import Callback
from ..feed import ArrayFeed
from ..layers.base import KernelLayer
from ..metrics import TRAINING_METRICS
from ..progress import Progbar, SlowStartNotice
from ..tally import Tally
from ..validation import (
    as_array,
    as_finite,
    check_inputs,
    check_labels,
    check_positive_int,
    check_seed,
)

_ONE_BATCH = 1 << 62  # a batch size no array reaches: the *_on_batch methods' single batch


def _flow_steps(flow) -> int:
    """Batches per epoch of an augmentation flow (``len`` or ``n / batch_size``)."""
    if hasattr(flow, "__len__"):
        if len(flow) == 0:
            raise ValueError("the flow given to fit is empty (no batch in an epoch); make it "
                             "from at least one sample")
        return len(flow)
    if hasattr(flow, "n") and hasattr(flow, "batch_size"):
        return math.ceil(flow.n / flow.batch_size)
    raise ValueError(f"fit cannot tell how many batches make an epoch of this "
                     f"{type(flow).__name__}; pass steps_per_epoch=... (batches per epoch)")


def _warn_ran_out(epoch: int, step: int, steps: int) -> None:
    """A generator ended before ``steps_per_epoch`` batches: fit stops there, as Keras."""
    warnings.warn(
        f"fit stopped at epoch {epoch + 1}, step {step + 1} of {steps}: the input ran out of "
        "data. Make sure it yields at least steps_per_epoch * epochs batches (or pass a "
        "smaller steps_per_epoch). The weights and history so far are kept.",
        RuntimeWarning, stacklevel=5)


def _warn_diverged(epoch: int, step: int, value: float, bad_update: bool = False,
                   learning_rate: float = math.nan) -> None:
    """fit stops on a non-finite loss or update (``terminate_on_nan``): say why, once."""
    if bad_update:
        what = (f"its update would have made weights or optimizer state NaN or inf (the "
                f"loss, {value:.4g}, was finite; the learning rate was {learning_rate:.4g}). "
                "That step was undone: the weights, the optimizer's state and BatchNorm's "
                "statistics are those from before that batch. Try a lower learning rate.")
    else:
        what = (f"the loss became {value} (training diverged). The weights are those from "
                "before that batch. Try a lower learning rate, scaled inputs (e.g. x / 255) "
                "or check the data for extreme values.")
    warnings.warn(f"fit stopped at epoch {epoch + 1}, step {step + 1}: {what}",
                  RuntimeWarning, stacklevel=5)


def _checked_callbacks(callbacks) -> list[Callback]:
    """fit's ``callbacks`` as a list, every one a Callback."""
    if isinstance(callbacks, Callback):
        raise TypeError(f"callbacks must be a list, e.g. callbacks=[{type(callbacks).__name__}"
                        "(...)], not a single callback")
    callbacks = list(callbacks or [])
    bad = [c for c in callbacks if not isinstance(c, Callback)]
    if bad:
        raise TypeError(f"callbacks must be minicnn.callbacks.Callback objects, got {bad}")
    return callbacks


def _check_validation_split(validation_split) -> None:
    if isinstance(validation_split, (bool, np.bool_)) or not (
            isinstance(validation_split, numbers.Real) and 0.0 <= validation_split < 1.0):
        raise ValueError(f"validation_split must be in [0, 1), got {validation_split!r}")


def _warn_unused_kernels(backend, calls_before: dict[str, int]) -> None:
    """A learner's module defined kernels this fit never called: say which (they are not
    what trained, whatever the checker said of them)."""
    unused = sorted(name for name, count in calls_before.items()
                    if backend.module_calls[name] == count)
    if unused:
        warnings.warn(f"{backend.name}'s {', '.join(unused)} did not run in this fit: the "
                      "model's layers, loss and optimizer call other kernels (the numpy "
                      "backend's textbook path: docs/architecture.md)", UserWarning,
                      stacklevel=3)


class History:
    """What ``fit`` returns: ``history.history["val_accuracy"]`` is a list, one entry per epoch."""

    def __init__(self):
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def append(self, epoch: int, logs: dict[str, float]) -> None:
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)


class Trainer:
    """compile, fit, evaluate and predict for a model with ``layers`` and the graph of their
    calls, ``nodes()`` (``Model``, ``Sequential``)."""

    @contextlib.contextmanager
    def _one_thread_at_a_time(self):
        """A model's weights, activations and step buffers are shared by all its calls: a
        second thread entering fit, evaluate or predict while another runs one is refused
        with a clear error (the same thread may nest them, as a callback's evaluate inside
        fit)."""
        if not self._lock.acquire(blocking=False):
            raise RuntimeError(
                f"model {self.name!r} is already running fit, evaluate or predict in another "
                f"thread; a minicnn model serves one thread at a time (give each thread its "
                f"own copy, e.g. load_model of a saved one)")
        try:
            yield
        finally:
            self._lock.release()

    # -- compile --------------------------------------------------------------------------

    def compile(self, optimizer="adam", loss="sparse_categorical_crossentropy", metrics=None,
                fuse: bool | None = None):
        """Choose the optimizer ("adam", "sgd" or an instance), loss and metrics (["accuracy"]).

        An optimizer instance keeps per-parameter state, so it belongs to one model.
        ``fuse``: whether training runs ``fusion.plan``'s fused kernels; None (default) lets
        the backend decide (the numpy backend runs every layer's own forward and backward,
        the fast ones fuse), False runs the textbook path on any backend.
        """
        if fuse not in (None, True, False):
            raise ValueError(f"fuse must be None, True or False, got {fuse!r}")
        metrics = [metrics] if isinstance(metrics, str) else list(metrics or [])
        unknown = [m for m in metrics if m not in TRAINING_METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; expected some of "
                             f"{sorted(TRAINING_METRICS)}")
        opt, loss_ = optimizers.get(optimizer), losses.get(loss)
        if metrics and not loss_.categorical:
            raise ValueError(f"{metrics} need a classification loss, not {loss_.name!r}")
        opt.attach(self)
        self.optimizer, self.loss, self.fuse = opt, loss_, fuse
        self.metrics = list(dict.fromkeys(TRAINING_METRICS[m][0] for m in metrics))
        self._metric_k = {TRAINING_METRICS[m][0]: TRAINING_METRICS[m][1] for m in metrics}
        self._placed_on = None

    def _require_compiled(self) -> None:
        if self.loss is None:
            raise RuntimeError("compile the model first: model.compile(optimizer, loss, metrics)")

    def check_data(self, x, y, what: str = "x") -> tuple[np.ndarray, np.ndarray]:
        """x and y checked against the compiled model, as float arrays in the compute dtype
        (copies: the caller's arrays are never changed)."""
        self._require_compiled()
        x = check_inputs(x, self.input_shape, config.dtype(), what)
        targets = check_labels(y, len(x), self.output_shape[0], self.loss.sparse,
                               self.loss.categorical)
        return x, targets.astype(config.dtype())

    # -- one step: forward, loss, backward, update ----------------------------------------

    @property
    def _loss_takes_logits(self) -> bool:
        """The output layer's activation is the one the loss computes with it (softmax)."""
        return (self.loss.fuses is not None
                and self.nodes()[-1].layer.activation == self.loss.fuses)

    def plan(self, for_loss: bool = True) -> fusion.Plan:
        """The stages a step runs on the active backend (``fusion.plan``): fused where the
        backend ``fuses`` (or compile's ``fuse`` says so), else each layer on its own;
        ``for_loss``: ending in the logits when the loss takes them. Made once per layer
        graph, path and loss fusion."""
        fuse = get_backend().fuses if self.fuse is None else self.fuse
        logits = for_loss and self.loss is not None and self._loss_takes_logits
        nodes = self.nodes()
        key = (tuple((id(node.layer), node.inputs) for node in nodes), fuse, logits)
        if key not in self._plans:
            self._plans[key] = fusion.plan(nodes, fuse, logits)
        return self._plans[key]

    def stages(self) -> list[fusion.Stage]:
        """The stages a training step runs, in order (``plan``); ``stage_outputs`` holds
        what each returned in the last training step's forward pass (a ``predict`` or
        ``evaluate`` since, by a callback say, leaves them)."""
        return self.plan().stages

    def _forward(self, x, training: bool, plan: fusion.Plan):
        """The model's output for a device batch, through ``plan``'s stages in order."""
        values = plan.forward(x, training)
        if training:
            self.stage_outputs = values[1:]
        return values[-1]

    def _step_loss(self, tally: Tally, x, y, training: bool, weights=None, plan=None):
        """Forward a device batch through ``plan`` (default: ``self.plan()``); its data loss
        (no weight penalties, see ``_penalty``) and metric counts go to the step ``tally``
        has begun, rows weighted by ``weights`` (N,) if given. Returns d loss / d output."""
        out = self._forward(x, training, plan or self.plan())
        return tally.loss_gradient(self.loss, out, y, weights, self._metric_k,
                                   logits=self._loss_takes_logits)

    def _penalty(self) -> float:
        """The kernel_regularizer penalties of every layer (part of the reported loss)."""
        return sum(layer.penalty() for layer in self.layers if isinstance(layer, KernelLayer))

    def _tally(self, steps: int = 1) -> Tally:
        """The backend's tally (its ``tally`` hook) for ``steps`` steps."""
        return get_backend().tally(steps, self.metrics)

    def _ready_batch(self, x, y) -> tuple:
        """The batch of compute_loss, compute_gradients and train_step, ready to use: host
        arrays checked and converted as fit's are (labels as the loss takes them), then in
        the backend's memory; a GPU backend's own arrays are used as they are."""
        self._require_compiled()
        backend = self.ready()
        if backend.on_device and not isinstance(x, (np.ndarray, list, tuple)):
            return x, y
        x, y = self.check_data(x, y)
        return backend.to_device(x), backend.to_device(y)

    def compute_loss(self, x, y, training: bool = True) -> float:
        """Loss of one batch (x and y as fit takes them), weight penalties included;
        nothing changes but BatchNorm's moving statistics in training."""
        x, y = self._ready_batch(x, y)
        tally = self._tally()
        tally.begin(len(x))
        self._step_loss(tally, x, y, training)
        tally.read()
        return tally.last_loss + self._penalty()

    def compute_gradients(self, x, y, sample_weight=None) -> float:
        """Loss of one batch (x and y as fit takes them) and the gradients of every layer's
        parameters into ``layer.grads``. Returns the loss, weight penalties included; the
        weights do not change. After a NaN or inf loss the gradients mean nothing
        (``train_step`` then applies none)."""
        x, y = self._ready_batch(x, y)
        tally = self._tally()
        self.run_step(tally, x, y, sample_weight, update=False)
        tally.read()
        return tally.last_loss

    def train_step(self, x, y, sample_weight=None) -> tuple[float, dict]:
        """One optimizer step on a batch (x and y as fit takes them): ``compute_gradients``,
        then the update; returns (loss, metric counts). ``sample_weight`` (N,) host array
        weights the rows of the loss. All or nothing, as a step of fit: a non-finite loss
        or update, or an error part-way, changes nothing."""
        x, y = self._ready_batch(x, y)
        tally = self._one_step(x, y, sample_weight)
        return tally.last_loss, tally.counts

    def _one_step(self, x, y, sample_weight=None) -> Tally:
        """train_step in a tally of its own, read back."""
        tally = self._tally()
        self.run_step(tally, x, y, sample_weight)
        tally.read()
        return tally

    def run_step(self, tally: Tally, x, y, sample_weight=None, update: bool = True,
                 plan: fusion.Plan | None = None) -> None:
        """One training step on a batch already in the backend's memory, as the textbook
        writes it: forward and the loss's gradient, backward through the stages, the
        optimizer's update (``update``). Its loss and metric counts go to ``tally`` (the
        backend's ``tally(steps, metrics)``); a step whose loss is NaN or inf changes
        nothing. ``plan`` (default ``self.plan()``): the stages to run, e.g. timed ones."""
        plan = plan or self.plan()
        tally.begin(len(x), mark=self.optimizer.iterations)
        grad = self._step_loss(tally, x, y, True, sample_weight, plan)  # forward, dL/d(out)
        if tally.diverged():
            return
        plan.backward(grad)  # each stage's, in reverse; fills every layer's grads
        tally.add(len(x) * sum(layer.last_penalty for layer in self.layers
                               if isinstance(layer, KernelLayer)))
        if update:
            tally.update(self.optimizer, self.layers)  # p <- p - lr g, or Adam's

    # -- fit ----------------------------------------------------------------------------

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
        A step is all or nothing: one whose loss is NaN or inf, whose update would make a
        weight NaN or inf, or that raises, changes no weight, optimizer state, BatchNorm
        statistic or step count; ``terminate_on_nan`` (default) then stops training with a
        warning, keeping the weights and the history so far.
        (On a GPU the loss is read back once per progress update; the steps queued after a
        bad one change no weights either, only BatchNorm's moving statistics see them.)
        """
        with self._one_thread_at_a_time():
            self._require_compiled()
            check_positive_int(epochs, "epochs")
            seed = check_seed(seed)
            if verbose not in (0, 1, 2):
                raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
            callbacks = _checked_callbacks(callbacks)
            if isgeneratorfunction(x):
                raise TypeError(f"fit got the generator function {x.__name__} itself; call "
                                f"it: fit({x.__name__}(...), ...)")
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
                if steps_per_epoch is not None:
                    raise ValueError("steps_per_epoch is for generators and flows; with arrays an "
                                     "epoch is every batch of batch_size samples (len(x) / "
                                     "batch_size, rounded up)")
                check_positive_int(batch_size, "batch_size")
                _check_validation_split(validation_split)
                x, y = self.check_data(x, y)
                weights = self._sample_weights(y, sample_weight, class_weight)
                if validation_split and validation_data is None:
                    cut = math.floor(len(x) * (1.0 - validation_split))  # Keras: the last ones
                    if cut <= 0 or cut == len(x):
                        raise ValueError("validation_split leaves no training or no "
                                         "validation data")
                    x, y, validation = x[:cut], y[:cut], (x[cut:], y[cut:])
                    weights = None if weights is None else weights[:cut]
                steps = math.ceil(len(x) / batch_size)
            if validation_data is not None:
                if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
                    raise ValueError("validation_data must be a tuple (x_val, y_val) of arrays, "
                                     f"got {type(validation_data).__name__} (a flow or "
                                     "generator is not taken for validation)")
                validation = self.check_data(*validation_data, what="validation x")

            backend = self.ready(seed)
            for i, layer in enumerate(self.layers):  # Dropout masks: reproducible from seed
                if layer.uses_rng and getattr(layer, "seed", None) is None:
                    layer.rng = np.random.default_rng(None if seed is None else [seed, i])
            calls_before = dict(backend.module_calls or {})
            if calls_before and verbose:
                print(f"minicnn: training with {backend.name}'s "
                      f"{', '.join(sorted(calls_before))} (the reference's for the rest)")
            with backend.session():
                # arrays go to the backend's memory once, not batch by batch
                feed = x if flow else ArrayFeed(backend, x, y, weights, batch_size)
                if validation is not None:
                    validation = ArrayFeed(backend, *validation, None, batch_size)
                history = self._fit_loop(feed, steps, epochs, verbose, shuffle, seed,
                                         validation, terminate_on_nan, callbacks)
            _warn_unused_kernels(backend, calls_before)
            return history

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
            labels = (targets.astype(int) if targets.ndim == 1  # sparse: class indices
                      else targets.argmax(axis=1) if targets.shape[1] > 1
                      else (targets[:, 0] > 0.5).astype(int))
            table = np.ones(max(self.output_shape[0], 2))
            for label, weight in class_weight.items():
                ok = (isinstance(label, (int, np.integer)) and not isinstance(label, bool)
                      and 0 <= label < len(table) and isinstance(weight, numbers.Real)
                      and not isinstance(weight, bool) and math.isfinite(weight)
                      and weight >= 0)
                if not ok:
                    raise ValueError(f"class_weight entry {label!r}: {weight!r} is not a class "
                                     f"index in [0, {len(table)}) with a number >= 0")
                table[int(label)] = float(weight)
            weights *= table[labels]
        return weights

    def _fit_loop(self, feed, steps, epochs, verbose, shuffle, seed, validation,
                  terminate_on_nan, callbacks) -> History:
        backend = get_backend()
        flow = not isinstance(feed, ArrayFeed)
        rng = np.random.default_rng(seed)
        history = History()
        notice = backend.compile_notice if verbose else None
        batch_hooks = [c for c in callbacks if c.has_batch_hooks()]
        tally = backend.tally(steps, self.metrics)
        # a callback's batch hook or terminate_on_nan=False needs every step's numbers
        tally.every_step = bool(batch_hooks) or not terminate_on_nan
        self.stop_training = False
        for callback in callbacks:
            callback.set_model(self)
            callback.set_params({"epochs": epochs, "steps": steps, "verbose": verbose,
                                 "validation": validation is not None})
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
            for step in range(steps):
                for callback in batch_hooks:
                    callback.on_train_batch_begin(step)
                if flow:
                    try:
                        xb, yb, wb = self._flow_batch(feed)
                    except StopIteration:  # Keras: stop training, keep what was learned
                        _warn_ran_out(epoch, step, steps)
                        self.stop_training = True
                        tally.read()
                        break
                else:
                    xb, yb, wb = feed.batch(step)
                slow_start = notice and epoch == 0 and step == 0  # may compile kernels
                with backend.step_buffers(self, "train", len(xb)), \
                        SlowStartNotice(notice if slow_start else None, after=2.0):
                    self.run_step(tally, backend.to_device(xb), backend.to_device(yb), wb)
                if not (step == steps - 1 or tally.due()):
                    continue
                tally.read()
                logs = tally.logs()
                for callback in batch_hooks:
                    callback.on_train_batch_end(step, {**logs, "batch_loss": tally.last_loss})
                if tally.first_bad is not None:
                    if terminate_on_nan:
                        _warn_diverged(epoch, tally.first_bad, tally.last_loss,
                                       tally.bad_update,
                                       self.optimizer.current_learning_rate())
                        # no update from that step on (the device skipped them)
                        self.optimizer.iterations = tally.mark(tally.first_bad)
                        self.stop_training = True
                    else:
                        tally.forgive()
                if self.stop_training:
                    break
                bar.update(step + 1, logs)
            if tally.steps_read == 0:  # the input ran out before this epoch's first step
                break
            logs = tally.logs()
            if validation is not None and math.isfinite(tally.loss_sum):
                with backend.step_buffers(self, "validate", validation.size):
                    logs.update(self._evaluate_feed(validation, prefix="val_"))
            elif validation is not None:  # a diverged epoch: NaN keeps history's lists aligned
                logs.update({f"val_{key}": math.nan for key in tally.logs()})
            for callback in callbacks:
                callback.on_epoch_end(epoch, logs)
            bar.finish(logs, tally.steps_read)
            history.append(epoch, logs)
            if self.stop_training:
                break
        for callback in callbacks:
            callback.on_train_end()
        return history

    def _flow_batch(self, flow):
        """The next batch of a flow or generator, checked: (x, y) or (x, y, sample_weight)
        -> x, targets, per-sample loss weights (or None)."""
        batch = next(flow)
        if not (isinstance(batch, (tuple, list)) and len(batch) in (2, 3)):
            raise ValueError("a generator or flow given to fit must yield (x, y) or "
                             f"(x, y, sample_weight), got {type(batch).__name__}")
        x, y = self.check_data(batch[0], batch[1])
        weights = self._sample_weights(y, batch[2], None) if len(batch) == 3 else None
        return x, y, weights

    def _batch_logs(self, logs: dict, return_dict: bool):
        """Keras' return convention: the dict, or [loss, metric, ...] (a bare loss alone)."""
        if return_dict:
            return logs
        values = list(logs.values())
        return values if len(values) > 1 else values[0]

    def _placed_arrays(self, x, y, sample_weight):
        """Checked copies of x and y, their per-sample loss weights (or None), and the
        active backend, which now holds the model's weights."""
        x, y = self.check_data(x, y)
        weights = self._sample_weights(y, sample_weight, None)
        return x, y, weights, self.ready()

    def train_on_batch(self, x, y, sample_weight=None, return_dict: bool = False):
        """One optimizer step on one batch of host arrays (checked, moved to the backend);
        returns this batch's ``[loss, metric, ...]`` (or a dict), as Keras does."""
        with self._one_thread_at_a_time():
            x, y, weights, backend = self._placed_arrays(x, y, sample_weight)
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

    def profile(self, x, y, steps: int = 10) -> list[dict]:
        """Where a training step's time goes, a row per fused stage, the loss and the
        optimizer (``minicnn.inspect.profile``; ``inspect.print_profile`` prints them)."""
        with self._one_thread_at_a_time():
            return inspect.profile(self, x, y, steps)

    def input_gradient(self, x, dy, before_activation: bool = False) -> np.ndarray:
        """d sum(output * dy) / d x: how a weighted sum of the model's outputs for images
        ``x`` changes with each input pixel, in inference mode (BatchNorm's moving
        statistics, no Dropout). ``dy`` has the output's shape (N, K). With
        ``before_activation`` the output is the last layer's before its softmax or
        sigmoid (the class scores saliency maps use). Same shape as ``x``; the weights do
        not change (their ``grads`` are overwritten)."""
        with self._one_thread_at_a_time():
            x = check_inputs(x, self.input_shape, config.dtype())
            backend = self.ready()
            dy = as_finite(as_array(dy, "dy"), config.dtype(), "dy")
            if dy.shape != (len(x), *self.output_shape):
                raise ValueError(f"dy must have the output's shape {(len(x), *self.output_shape)}, "
                                 f"got {dy.shape}")
            # each layer's own backward, on to the input
            plan = fusion.plan(self.nodes(), fuse=False, fuse_loss=before_activation,
                               to_input=True)
            with backend.session(), backend.step_buffers(self, "input_gradient", len(x)):
                self._forward(backend.to_device(x), False, plan)
                return backend.to_host(plan.backward(backend.to_device(dy)))

    def _evaluate_feed(self, feed: ArrayFeed, prefix: str = "") -> dict:
        """Loss (weight penalties included) and metrics over every batch of ``feed``."""
        backend = get_backend()
        tally = backend.tally(len(feed), self.metrics)
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
        with self._one_thread_at_a_time():
            check_positive_int(batch_size, "batch_size")
            x, y, weights, backend = self._placed_arrays(x, y, sample_weight)
            with backend.session(), backend.step_buffers(self, "evaluate", len(x)):
                logs = self._evaluate_feed(ArrayFeed(backend, x, y, weights, batch_size))
            if verbose:
                print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
            return self._batch_logs(logs, return_dict)

    def predict(self, x, batch_size: int = 32, verbose: int = 0) -> np.ndarray:
        """Outputs for every sample of ``x`` (probabilities after a softmax), as a host array."""
        with self._one_thread_at_a_time():
            check_positive_int(batch_size, "batch_size")
            x = check_inputs(x, self.input_shape, config.dtype())
            backend = self.ready()
            out = []
            with backend.session():
                for start in range(0, len(x), batch_size):
                    batch = x[start:start + batch_size]
                    with backend.step_buffers(self, "predict", len(batch)):
                        out.append(backend.to_host(self._forward(
                            backend.to_device(batch), False, self.plan(for_loss=False))))
            return np.concatenate(out)
