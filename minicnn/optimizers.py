"""SGD (momentum, Nesterov), Adam, AdamW and RMSprop with Keras' defaults, and learning-rate
schedules; the update arithmetic is a backend kernel.

A learning rate is a number or a schedule, a function of the step count:
``Adam(learning_rate=CosineDecay(1e-3, decay_steps=10_000))``.
"""

from __future__ import annotations

import copy
import math
import numbers
import weakref

import numpy as np

from . import config
from .backends import get_backend, to_numpy


def _is_number(value) -> bool:
    """A real number: Python's or NumPy's (np.float32(0.01) included), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _check(value: float, name: str, low: float, high: float | None = None) -> float:
    """A number in (low, high) that float32, the default compute type, also holds: no
    overflow to inf, and nothing that is above 0 as a float64 but 0 as a float32 (an
    epsilon of 1e-50 would divide by zero)."""
    ok = _is_number(value) and math.isfinite(value) and value > low
    if high is not None:
        ok = ok and value < high
    if not ok:
        bound = f"in ({low}, {high})" if high is not None else f"> {low}"
        raise ValueError(f"{name} must be a number {bound}, got {value!r}")
    with np.errstate(over="ignore", under="ignore"):
        as_float32 = float(np.float32(value))
    if not math.isfinite(as_float32) or (as_float32 <= low < value):
        raise ValueError(f"{name}={value!r} cannot be carried in float32 (it becomes "
                         f"{as_float32}); use a value between {np.finfo(np.float32).tiny:.2g} "
                         f"and {np.finfo(np.float32).max:.2g}")
    return float(value)


# ----------------------------------------------------------------------------- schedules


class LearningRateSchedule:
    """A learning rate that changes with the optimizer's step count (0 for the first step)."""

    def __call__(self, step: int) -> float:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"class_name": type(self).__name__, "config": dict(self.__dict__)}


class ExponentialDecay(LearningRateSchedule):
    """initial * decay_rate ** (step / decay_steps) (the exponent floored with ``staircase``)."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, decay_rate: float,
                 staircase: bool = False):
        self.initial_learning_rate = _check(initial_learning_rate, "initial_learning_rate", 0.0)
        self.decay_steps = _check(decay_steps, "decay_steps", 0.0)
        self.decay_rate = _check(decay_rate, "decay_rate", 0.0)
        self.staircase = bool(staircase)

    def __call__(self, step):
        power = step / self.decay_steps
        return self.initial_learning_rate * self.decay_rate ** (
            math.floor(power) if self.staircase else power)


class CosineDecay(LearningRateSchedule):
    """Half a cosine from initial to initial * alpha over ``decay_steps``, then flat."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, alpha: float = 0.0):
        self.initial_learning_rate = _check(initial_learning_rate, "initial_learning_rate", 0.0)
        self.decay_steps = _check(decay_steps, "decay_steps", 0.0)
        if not (_is_number(alpha) and 0.0 <= alpha <= 1.0):
            raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
        self.alpha = float(alpha)

    def __call__(self, step):
        progress = min(step, self.decay_steps) / self.decay_steps
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return self.initial_learning_rate * ((1 - self.alpha) * cosine + self.alpha)


class PiecewiseConstantDecay(LearningRateSchedule):
    """values[0] until boundaries[0], values[1] until boundaries[1], ..., then values[-1]."""

    def __init__(self, boundaries, values):
        boundaries, values = list(boundaries), list(values)
        if len(values) != len(boundaries) + 1 or boundaries != sorted(boundaries):
            raise ValueError("PiecewiseConstantDecay needs increasing boundaries and one more "
                             f"value than boundaries, got {boundaries} and {values}")
        self.boundaries = [int(b) for b in boundaries]
        self.values = [_check(v, "values", 0.0) for v in values]

    def __call__(self, step):
        for boundary, value in zip(self.boundaries, self.values):
            if step <= boundary:
                return value
        return self.values[-1]


SCHEDULES = {cls.__name__: cls for cls in (ExponentialDecay, CosineDecay, PiecewiseConstantDecay)}


def _learning_rate(value):
    """A positive number or a schedule (or a schedule's saved config)."""
    if isinstance(value, LearningRateSchedule):
        return value
    if isinstance(value, dict) and value.get("class_name") in SCHEDULES:
        return SCHEDULES[value["class_name"]](**value["config"])
    return _check(value, "learning_rate", 0.0)


# ----------------------------------------------------------------------------- optimizers


class Optimizer:
    """Keeps per-parameter state (``slots``) keyed by ``(layer index, parameter name)``."""

    name = ""
    slot_names: tuple[str, ...] = ()

    def __init__(self, learning_rate):
        self.learning_rate = learning_rate
        self.iterations = 0
        self.slots: dict[tuple[int, str], dict[str, object]] = {}
        self._model = None  # weak reference to the model this optimizer trains

    def __deepcopy__(self, memo: dict) -> Optimizer:
        """A copy of the state, bound to no model yet (the copied model attaches it)."""
        clone = type(self).__new__(type(self))
        memo[id(self)] = clone
        for key, value in vars(self).items():
            setattr(clone, key, None if key == "_model" else copy.deepcopy(value, memo))
        return clone

    def attach(self, model) -> None:
        """Bind to ``model`` (``compile`` does): state from another model would be wrong here."""
        owner = self._model() if self._model is not None else None
        if owner is not None and owner is not model:
            raise ValueError(
                f"this {type(self).__name__} optimizer already trains model {owner.name!r} and "
                "holds its state; give each model its own, e.g. compile(optimizer=Adam())"
            )
        self._model = weakref.ref(model)

    def _slots_for(self, key, param) -> dict[str, object]:
        if key not in self.slots:
            zeros = get_backend().zeros_like
            self.slots[key] = {name: zeros(param) for name in self.slot_names}
        return self.slots[key]

    def current_learning_rate(self) -> float:
        """The learning rate of the next step (a schedule's value at this step count, which
        must be a number >= 0 that float32 holds: a ValueError, before any update, if not)."""
        lr = self.learning_rate
        if not isinstance(lr, LearningRateSchedule):
            return lr
        value = lr(self.iterations)
        if not (_is_number(value) and 0 <= value <= float(np.finfo(np.float32).max)):
            raise ValueError(f"the learning-rate schedule {type(lr).__name__} gave {value!r} "
                             f"at step {self.iterations}; a learning rate must be a finite "
                             "number >= 0 (no update was applied)")
        return float(value)

    @property
    def learning_rate(self):
        """A positive number or a schedule; checked when set, as Keras' attribute (``opt.
        learning_rate = 0.1``, also between epochs of a fit)."""
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value) -> None:
        self._learning_rate = _learning_rate(value)

    def set_learning_rate(self, value: float) -> None:
        """Replace the learning rate (callbacks do: LearningRateScheduler, ReduceLROnPlateau).
        Not when it is a schedule, as in Keras: the schedule would be silently lost."""
        if isinstance(self.learning_rate, LearningRateSchedule):
            raise TypeError(f"this optimizer's learning rate is a schedule "
                            f"({type(self.learning_rate).__name__}) and cannot be set; use a "
                            "plain number as learning_rate to let a callback change it")
        self.learning_rate = _check(value, "learning_rate", 0.0)

    def apply(self, layers) -> int:
        """One update of every parameter of ``layers`` from its ``grads``. Returns how many
        elements kept their old values because their new ones were not finite (the
        backend's update kernels never write NaN or inf; CUDA's set the step's flag on the
        device instead and return 0)."""
        self.lr = self.current_learning_rate()  # this step's rate, for _update
        self.iterations += 1
        return self._update_all([(param, layer.grads[key], self._slots_for((i, key), param))
                                 for i, layer in enumerate(layers) if layer.trainable
                                 for key, param in layer.params.items()])

    def _update_all(self, updates) -> int:
        """Apply every (param, grad, slots) update: one ``_update`` each unless the optimizer
        batches them (Adam: one kernel call for all). -> elements kept."""
        return sum(self._update(param, grad, slots) for param, grad, slots in updates)

    def _update(self, param, grad, slots) -> int:
        raise NotImplementedError

    def get_config(self) -> dict:
        lr = self.learning_rate
        return {"name": self.name,
                "learning_rate": lr.get_config() if isinstance(lr, LearningRateSchedule) else lr}

    def state_arrays(self) -> dict[str, object]:
        """Flat ``{"i/param/slot": host array}`` of the state, for ``save``."""
        return {f"{i}/{key}/{slot}": to_numpy(value)
                for (i, key), slots in self.slots.items() for slot, value in slots.items()}

    def load_state(self, iterations: int, arrays: dict[str, object]) -> None:
        self.iterations = iterations
        self.slots = {}
        for flat, value in arrays.items():
            i, key, slot = flat.split("/")
            self.slots.setdefault((int(i), key), {})[slot] = value

    def place(self, backend) -> None:
        """Move the state into ``backend``'s memory."""
        dtype = config.dtype()
        for slots in self.slots.values():
            for slot, value in slots.items():
                slots[slot] = backend.to_device(np.ascontiguousarray(to_numpy(value), dtype))


class SGD(Optimizer):
    """v <- momentum v - lr g; w <- w + v (plain gradient descent when momentum = 0);
    ``nesterov``: w <- w + momentum v - lr g."""

    name = "sgd"

    def __init__(self, learning_rate=0.01, momentum: float = 0.0, nesterov: bool = False):
        super().__init__(learning_rate)
        if not (_is_number(momentum) and 0.0 <= momentum < 1.0):
            raise ValueError(f"momentum must be a number in [0, 1), got {momentum!r}")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)
        self.slot_names = ("velocity",) if self.momentum else ()

    def _update(self, param, grad, slots):
        return get_backend().sgd_update(param, grad, slots.get("velocity"), self.lr,
                                        self.momentum, self.nesterov)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam (Kingma & Ba) in Keras' form: lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)."""

    name = "adam"
    slot_names = ("m", "v")

    def __init__(self, learning_rate=0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7):
        super().__init__(learning_rate)
        self.beta_1 = _check(beta_1, "beta_1", 0.0, 1.0)
        self.beta_2 = _check(beta_2, "beta_2", 0.0, 1.0)
        self.epsilon = _check(epsilon, "epsilon", 0.0)

    def _update_all(self, updates):
        if not updates:
            return 0
        t = self.iterations
        lr_t = self.lr * math.sqrt(1 - self.beta_2**t) / (1 - self.beta_1**t)
        params, grads, slots = zip(*updates)
        return get_backend().adam_update_many(params, grads, [s["m"] for s in slots],
                                              [s["v"] for s in slots], lr_t, self.beta_1,
                                              self.beta_2, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): w <- w - lr wd w, then Adam."""

    name = "adamw"

    def __init__(self, learning_rate=0.001, weight_decay: float = 0.004, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-7):
        super().__init__(learning_rate, beta_1, beta_2, epsilon)
        if not (_is_number(weight_decay) and math.isfinite(weight_decay) and weight_decay >= 0):
            raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
        self.weight_decay = float(weight_decay)

    def _update_all(self, updates):
        backend = get_backend()
        kept = sum(backend.add_scaled(param, param, -self.lr * self.weight_decay)
                   for param, _, _ in updates)
        return kept + super()._update_all(updates)

    def get_config(self):
        return {**super().get_config(), "weight_decay": self.weight_decay}


class RMSprop(Optimizer):
    """v <- rho v + (1 - rho) g^2; w <- w - lr g / sqrt(v + epsilon)   (Keras' form)."""

    name = "rmsprop"
    slot_names = ("velocity",)

    def __init__(self, learning_rate=0.001, rho: float = 0.9, epsilon: float = 1e-7):
        super().__init__(learning_rate)
        self.rho = _check(rho, "rho", 0.0, 1.0)
        self.epsilon = _check(epsilon, "epsilon", 0.0)

    def _update(self, param, grad, slots):
        return get_backend().rmsprop_update(param, grad, slots["velocity"], self.lr, self.rho,
                                            self.epsilon)

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


_OPTIMIZERS = {cls.name: cls for cls in (SGD, Adam, AdamW, RMSprop)}


def get(identifier: str | Optimizer) -> Optimizer:
    """An optimizer from its name ("sgd", "adam", "adamw", "rmsprop") with Keras defaults,
    or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if not isinstance(identifier, str) or identifier.lower() not in _OPTIMIZERS:
        raise ValueError(f"unknown optimizer {identifier!r}; expected one of {sorted(_OPTIMIZERS)}")
    return _OPTIMIZERS[identifier.lower()]()


def from_config(config: dict) -> Optimizer:
    config = dict(config)
    return _OPTIMIZERS[config.pop("name")](**config)
