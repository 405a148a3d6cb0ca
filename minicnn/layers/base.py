"""The Layer base class: parameters, gradients, weights I/O and the optional activation.

A layer keeps shapes and parameters; the arithmetic belongs to the active backend
(``minicnn.backends.get_backend()``), so the same layer runs on every backend.
"""

from __future__ import annotations

import numpy as np

from .. import config
from ..backends import get_backend, to_numpy

ACTIVATIONS = ("relu", "sigmoid", "softmax", "linear")


def check_activation(name: str | None) -> str:
    """Normalise an ``activation=`` argument; None means linear."""
    if name is None:
        return "linear"
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS} or None")
    return name


def check_positive_pair(value, what: str) -> tuple[int, int]:
    """Accept ``3`` or ``(3, 3)``; every entry must be a positive int."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in pair):
        raise ValueError(f"{what} must be a positive int or a pair of positive ints, got {value!r}")
    return int(pair[0]), int(pair[1])


def glorot_uniform(shape, fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """Keras' default kernel initialiser: U(-l, l) with l = sqrt(6 / (fan_in + fan_out))."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(config.dtype())


class Layer:
    """Base of every layer.

    Subclasses implement ``compute_output_shape``, ``_build_params`` (if they have
    weights), ``_forward`` (pre-activation output) and ``_backward`` (gradient of the
    pre-activation output -> gradient of the input, filling ``self.grads``).
    """

    def __init__(self, activation: str | None = None, input_shape=None, name: str | None = None):
        self.activation = check_activation(activation)
        self.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self.name = name or type(self).__name__.lower()
        self.output_shape: tuple[int, ...] | None = None
        self.params: dict[str, object] = {}
        self.grads: dict[str, object] = {}
        self.trainable = True  # False: the optimizer leaves this layer's parameters alone
        self.built = False
        self._placed_on = None  # the backend whose memory holds the parameters
        self._output = None
        self._activated = False

    # -- shapes and parameters --------------------------------------------------------

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(input_shape)

    def param_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """Shapes of the parameters this layer creates for that input (empty: none)."""
        return {}

    def build(self, input_shape, rng: np.random.Generator | None = None) -> None:
        """Create the parameters for inputs of ``input_shape`` (no batch axis)."""
        input_shape = tuple(int(d) for d in input_shape)
        self.output_shape = self.compute_output_shape(input_shape)
        self.input_shape = input_shape
        rng = rng if rng is not None else np.random.default_rng()
        self.params = self._init_params(input_shape, rng)
        self.grads = {k: None for k in self.params}
        self.built = True

    def _init_params(self, input_shape, rng) -> dict[str, np.ndarray]:
        return {}

    def count_params(self, input_shape=None) -> int:
        shape = input_shape if input_shape is not None else self.input_shape
        return sum(int(np.prod(s)) for s in self.param_shapes(tuple(shape)).values())

    def get_weights(self) -> list[np.ndarray]:
        """Host copies of the parameters, Keras order (kernel, bias)."""
        return [to_numpy(self.params[k]).copy() for k in self.params]

    def set_weights(self, weights) -> None:
        """Replace the parameters; shapes must match ``get_weights()``."""
        if not self.built:
            raise ValueError(f"layer {self.name!r} is not built yet; build it before set_weights")
        if len(weights) != len(self.params):
            raise ValueError(
                f"layer {self.name!r} expects {len(self.params)} weight arrays, got {len(weights)}"
            )
        new = {}
        for (key, old), value in zip(self.params.items(), weights):
            value = np.asarray(value)
            if value.shape != tuple(old.shape):
                raise ValueError(
                    f"layer {self.name!r}: {key} must have shape {tuple(old.shape)}, "
                    f"got {value.shape}"
                )
            with np.errstate(over="ignore"):
                value = value.astype(config.dtype())  # checked after the cast: 1e300 -> inf
            if not np.all(np.isfinite(value)):
                raise ValueError(f"layer {self.name!r}: {key} contains NaN or inf (as "
                                 f"{config.floatx()})")
            new[key] = value
        # All checked first: a rejected call changes nothing. Placed where the old ones were.
        self.params = new
        if self._placed_on is not None:
            self.place(self._placed_on)

    def place(self, backend) -> None:
        """Move the parameters into the memory of ``backend`` (host for CPU backends), in
        the current floatx (a model built before ``set_floatx`` is converted)."""
        for key, value in self.params.items():
            host = np.ascontiguousarray(to_numpy(value), dtype=config.dtype())
            self.params[key] = backend.to_device(host)
        self._placed_on = backend

    def get_config(self) -> dict:
        """Constructor arguments, enough to rebuild the layer (used by ``save``)."""
        config_ = {"name": self.name}
        if self.input_shape is not None:
            config_["input_shape"] = list(self.input_shape)
        return config_

    # -- computation --------------------------------------------------------------------

    def forward(self, x, training: bool = False, activate: bool = True):
        """Output for a batch ``x``; ``activate=False`` stops before the activation.

        The model uses ``activate=False`` on a final softmax/sigmoid to fuse it with the loss.
        """
        z = self._forward(x, training)
        self._activated = activate and self.activation != "linear"
        if self._activated:
            z = get_backend().activation_forward(self.activation, z)
        self._output = z
        return z

    def backward(self, dy, need_input_grad: bool = True):
        """Gradient of the loss w.r.t. this layer's input; fills ``self.grads``.

        ``need_input_grad=False`` (the first layer of a model) may skip it and return None.
        """
        if self._activated:
            dy = get_backend().activation_backward(self.activation, self._output, dy)
        return self._backward(dy, need_input_grad)

    def _forward(self, x, training: bool):
        return x

    def _backward(self, dz, need_input_grad: bool = True):
        return dz

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
