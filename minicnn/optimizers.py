"""SGD (with momentum) and Adam, Keras defaults; the update arithmetic is a backend kernel."""

from __future__ import annotations

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
    ok = _is_number(value) and math.isfinite(value) and value > low
    if high is not None:
        ok = ok and value < high
    if not ok:
        bound = f"in ({low}, {high})" if high is not None else f"> {low}"
        raise ValueError(f"{name} must be a number {bound}, got {value!r}")
    return float(value)


class Optimizer:
    """Keeps per-parameter state (``slots``) keyed by ``(layer index, parameter name)``."""

    name = ""
    slot_names: tuple[str, ...] = ()

    def __init__(self, learning_rate: float):
        self.learning_rate = _check(learning_rate, "learning_rate", 0.0)
        self.iterations = 0
        self.slots: dict[tuple[int, str], dict[str, object]] = {}
        self._model = None  # weak reference to the model this optimizer trains

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

    def apply(self, layers) -> None:
        """One update of every parameter of ``layers`` from its ``grads``."""
        self.iterations += 1
        for i, layer in enumerate(layers):
            if not layer.trainable:
                continue
            for key, param in layer.params.items():
                self._update(param, layer.grads[key], self._slots_for((i, key), param))

    def _update(self, param, grad, slots) -> None:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"name": self.name, "learning_rate": self.learning_rate}

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
    """v <- momentum v - lr g; w <- w + v (plain gradient descent when momentum = 0)."""

    name = "sgd"

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0):
        super().__init__(learning_rate)
        if not (_is_number(momentum) and 0.0 <= momentum < 1.0):
            raise ValueError(f"momentum must be a number in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        self.slot_names = ("velocity",) if self.momentum else ()

    def _update(self, param, grad, slots):
        get_backend().sgd_update(param, grad, slots.get("velocity"), self.learning_rate,
                                 self.momentum)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum}


class Adam(Optimizer):
    """Adam (Kingma & Ba) in Keras' form: lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)."""

    name = "adam"
    slot_names = ("m", "v")

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7):
        super().__init__(learning_rate)
        self.beta_1 = _check(beta_1, "beta_1", 0.0, 1.0)
        self.beta_2 = _check(beta_2, "beta_2", 0.0, 1.0)
        self.epsilon = _check(epsilon, "epsilon", 0.0)

    def _update(self, param, grad, slots):
        t = self.iterations
        lr_t = self.learning_rate * math.sqrt(1 - self.beta_2**t) / (1 - self.beta_1**t)
        get_backend().adam_update(param, grad, slots["m"], slots["v"], lr_t, self.beta_1,
                                  self.beta_2, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


_OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def get(identifier: str | Optimizer) -> Optimizer:
    """An optimizer from its name ("sgd", "adam") with Keras defaults, or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if not isinstance(identifier, str) or identifier.lower() not in _OPTIMIZERS:
        raise ValueError(f"unknown optimizer {identifier!r}; expected one of {sorted(_OPTIMIZERS)}")
    return _OPTIMIZERS[identifier.lower()]()


def from_config(config: dict) -> Optimizer:
    config = dict(config)
    return _OPTIMIZERS[config.pop("name")](**config)
