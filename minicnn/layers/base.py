"""The Layer base class: parameters, gradients, weights I/O and the optional activation.

A layer keeps shapes and parameters; the arithmetic belongs to the active backend
(``minicnn.backends.get_backend()``), so the same layer runs on every backend.
"""

from __future__ import annotations

import copy
import math
import re
import weakref
from typing import NamedTuple

import numpy as np

from .. import config, initializers, regularizers
from ..backends import get_backend, to_numpy

ACTIVATIONS = ("linear", "relu", "sigmoid", "softmax", "tanh", "elu", "leaky_relu", "silu",
               "gelu")
ALIASES = {"swish": "silu"}


def snake_case(class_name: str) -> str:
    """A layer's default name, by Keras' rule: Conv2D -> conv2d, BatchNormalization ->
    batch_normalization, MaxPool2D -> max_pool2d."""
    words = re.sub(r"(.)([A-Z][a-z0-9]+)", r"\1_\2", class_name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", words).lower()


def check_activation(name: str | None) -> str:
    """Normalise an ``activation=`` argument; None means linear, "swish" is "silu"."""
    if name is None:
        return "linear"
    name = ALIASES.get(name, name) if isinstance(name, str) else name
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of "
                         f"{ACTIVATIONS + tuple(ALIASES)} or None")
    return name


def check_shape(shape, what: str) -> tuple[int, ...]:
    """A sample's shape (no batch axis) as positive ints: (28, 28, 1), or 784 for (784,)."""
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    if not (isinstance(shape, (tuple, list)) and shape and all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0
            for d in shape)):
        raise ValueError(f"{what} must be the shape of one sample as positive ints, without "
                         f"the batch axis, e.g. (28, 28, 1); got {shape!r}")
    return tuple(int(d) for d in shape)


def check_positive_pair(value, what: str) -> tuple[int, int]:
    """Accept ``3`` or ``(3, 3)``; every entry must be a positive int."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in pair):
        raise ValueError(f"{what} must be a positive int or a pair of positive ints, got {value!r}")
    return int(pair[0]), int(pair[1])


class Weight(NamedTuple):
    """How a layer spells one weight: its shape, initialiser and whether the optimizer
    trains it (BatchNorm's moving statistics are weights that it does not)."""

    shape: tuple[int, ...]
    initializer: str = "zeros"
    trainable: bool = True


def _check_weight_name(layer, key) -> None:
    """A weight's name is a key in a saved file, whose parts '/' separates: letters,
    digits and '_' only, as Python names."""
    if not (isinstance(key, str) and key.isidentifier() and key.isascii()):
        raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) names a weight "
                         f"{key!r} in weight_specs; a weight's name must be ASCII letters, "
                         "digits and '_', not starting with a digit (e.g. 'scale_alpha'): "
                         "it is a key in the saved file")


class SymbolicTensor:
    """What a layer called on a symbolic tensor returns (Keras' KerasTensor): no values, only
    the shape of one sample and where it comes from: ``layer`` called on ``inputs`` (its
    ``call_index``-th call). ``Input(shape)`` makes the first one; ``Model(inputs,
    outputs)`` follows them back into a graph."""

    def __init__(self, shape: tuple[int, ...], layer: Layer | None = None,
                 inputs: tuple[SymbolicTensor, ...] = (), call_index: int = 0):
        self.shape, self.layer, self.inputs, self.call_index = shape, layer, inputs, call_index

    def __array__(self, *args, **kwargs):
        raise TypeError("a symbolic tensor has no values: it is a step of a graph "
                        "(Model(inputs, outputs)); predict with the model on arrays, e.g. "
                        "model.predict(x)")

    def __add__(self, other):
        raise TypeError("symbolic tensors are combined by merge layers: Add()([a, b]), "
                        "Concatenate()([a, b])")

    __radd__ = __add__

    def __repr__(self) -> str:
        origin = f" from {self.layer.name}" if self.layer is not None else ""
        return f"<SymbolicTensor shape=(None, {', '.join(map(str, self.shape))}){origin}>"


class Layer:
    """Base of every layer.

    Subclasses implement ``compute_output_shape``, ``weight_specs`` (if they have weights),
    ``forward`` and ``backward`` (the gradient of the input, filling ``self.grads``); a
    layer with an ``activation`` applies it with ``_activate`` and ``_activation_gradient``.

    Weights live in two dicts: ``params`` (trained: the optimizer updates them from
    ``grads``, same keys) and ``state`` (not trained, e.g. BatchNorm's moving averages).
    ``get_weights()`` returns both in the order ``weight_specs`` spells them (Keras' order).
    """

    uses_rng = False  # True: fit gives the layer a seeded ``rng`` (Dropout's masks)
    merges = False  # True: called on a list of tensors (Add, Concatenate)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        old = [name for name in ("_forward", "_backward") if name in vars(cls)]
        if old:  # the hooks of minicnn before 2026-12-07: never called now
            raise TypeError(f"{cls.__name__} defines {' and '.join(old)}; a minicnn layer "
                            "now overrides forward(self, x, training=False) and "
                            "backward(self, dy) (the gradient of its input), as Keras' call")

    def __init__(self, activation: str | None = None, input_shape=None, name: str | None = None):
        self.activation = check_activation(activation)
        self.input_shape = None if input_shape is None else check_shape(input_shape,
                                                                           "input_shape")
        self.name = name or snake_case(type(self).__name__)
        self.output_shape: tuple[int, ...] | None = None
        self.params: dict[str, object] = {}
        self.state: dict[str, object] = {}
        self.grads: dict[str, object] = {}
        self.trainable = True  # False: the optimizer leaves this layer's parameters alone
        self.built = False
        self.rng: np.random.Generator = np.random.default_rng()
        self._placed_on = None  # the backend whose memory holds the weights
        self.models: weakref.WeakSet = weakref.WeakSet()  # the models this layer is in
        self._z = self._a = None
        self._activated = False
        self.calls = 0  # how many symbolic tensors this layer was called on (its graph uses)

    def __deepcopy__(self, memo: dict) -> Layer:
        """A copy of the layer and its weights, in no model yet (a copied model adds it)."""
        clone = type(self).__new__(type(self))
        memo[id(self)] = clone
        for key, value in vars(self).items():
            setattr(clone, key, weakref.WeakSet() if key == "models"
                    else copy.deepcopy(value, memo))
        return clone

    # -- the functional API -----------------------------------------------------------

    def __call__(self, inputs) -> SymbolicTensor:
        """``y = layer(x)`` on a symbolic tensor ``x`` (a list of them for a merge layer):
        a symbolic tensor of the output's shape, a step of a graph that ``Model(inputs,
        outputs)`` trains. Called again, the layer is used again with the same weights
        (on inputs of the same shape)."""
        given = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        for t in given:
            if not isinstance(t, SymbolicTensor):
                raise TypeError(
                    f"layer {self.name!r} ({type(self).__name__}) was called on a "
                    f"{type(t).__name__}; a layer is called on symbolic tensors to build a "
                    "graph: x = Input((28, 28, 1)); y = Conv2D(32, 3)(x); "
                    "model = Model(x, y). To compute outputs for arrays, use "
                    "model.predict(x) (or layer.forward(x) on a built layer)")
        if self.merges != isinstance(inputs, (list, tuple)) or (self.merges and len(given) < 2):
            want = "a list of two or more tensors" if self.merges else "one tensor"
            raise TypeError(f"layer {self.name!r} ({type(self).__name__}) takes {want}, "
                            f"got {len(given)} in a {type(inputs).__name__}")
        shape = [t.shape for t in given] if self.merges else given[0].shape
        if self.input_shape is not None and not self.merges and self.input_shape != shape:
            raise ValueError(
                f"layer {self.name!r} ({type(self).__name__}) expects inputs of shape "
                f"{self.input_shape} (its input_shape, or its first call's), got {shape}; a "
                "layer called again shares its weights, so it needs the same input shape")
        out = self.compute_output_shape(shape)
        if not self.merges:
            self.input_shape = shape
        self.calls += 1
        return SymbolicTensor(tuple(out), self, tuple(given), self.calls - 1)

    # -- shapes and weights -----------------------------------------------------------

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(input_shape)

    def weight_specs(self, input_shape: tuple[int, ...]) -> dict[str, Weight]:
        """The weights this layer creates for that input, in Keras' order (empty: none)."""
        return {}

    def build(self, input_shape, rng: np.random.Generator | None = None) -> None:
        """Create the weights for inputs of ``input_shape`` (no batch axis)."""
        input_shape = tuple(int(d) for d in input_shape)
        self.output_shape = self.compute_output_shape(input_shape)
        self.input_shape = input_shape
        rng = rng if rng is not None else np.random.default_rng()
        self.params, self.state = {}, {}
        for key, spec in self.weight_specs(input_shape).items():
            _check_weight_name(self, key)
            value = initializers.get(spec.initializer)(spec.shape, rng)
            (self.params if spec.trainable else self.state)[key] = value
        self.grads = {k: None for k in self.params}
        self.built = True

    def count_params(self, input_shape=None, trainable: bool | None = None) -> int:
        """Number of weights (only those the optimizer trains, or only the others)."""
        shape = input_shape if input_shape is not None else self.input_shape
        return sum(math.prod(spec.shape) for spec in self.weight_specs(tuple(shape)).values()
                   if trainable is None or (spec.trainable and self.trainable) == trainable)

    def _weights(self) -> dict[str, object]:
        """Every weight, parameters and state, in spec order."""
        both = {**self.params, **self.state}
        return {key: both[key] for key in self.weight_specs(self.input_shape)}

    def get_weights(self) -> list[np.ndarray]:
        """Host copies of every weight, Keras order (kernel, bias; gamma, beta, moving ...);
        [] before the layer is built, as in Keras."""
        if not self.built:
            return []
        return [to_numpy(value).copy() for value in self._weights().values()]

    def set_weights(self, weights) -> None:
        """Replace every weight; shapes must match ``get_weights()``."""
        if not self.built:
            raise ValueError(f"layer {self.name!r} is not built yet; build it before set_weights")
        current = self._weights()
        if len(weights) != len(current):
            raise ValueError(
                f"layer {self.name!r} expects {len(current)} weight arrays, got {len(weights)}"
            )
        new = {}
        for (key, old), value in zip(current.items(), weights):
            value = np.asarray(value)
            if not (np.issubdtype(value.dtype, np.number) and value.dtype.kind != "c"):
                raise ValueError(f"layer {self.name!r}: {key} must be an array of real "
                                 f"numbers, got dtype {value.dtype}")
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
        self.params = {key: new[key] for key in self.params}
        self.state = {key: new[key] for key in self.state}
        if self._placed_on is not None:
            self.place(self._placed_on)

    def place(self, backend) -> None:
        """Move the weights into the memory of ``backend`` (host for CPU backends), in the
        current floatx (a model built before ``set_floatx`` is converted)."""
        for weights in (self.params, self.state):
            for key, value in weights.items():
                host = np.ascontiguousarray(to_numpy(value), dtype=config.dtype())
                weights[key] = backend.to_device(host)
        self._placed_on = backend

    def get_config(self) -> dict:
        """Constructor arguments, enough to rebuild the layer (used by ``save``)."""
        config_ = {"name": self.name}
        if self.input_shape is not None:
            config_["input_shape"] = list(self.input_shape)
        return config_

    # -- computation: each layer writes its own forward and backward ----------------------

    def forward(self, x, training: bool = False):
        """The output for a batch ``x`` (here the identity)."""
        return x

    def backward(self, dy):
        """dL/dx from dy = dL/d(output) of the last ``forward``; fills ``self.grads``."""
        return dy

    def update_state(self) -> None:
        """Apply what the last training forward asks of the non-trainable state (BatchNorm's
        moving statistics), once its step's update went through: here nothing."""

    def _activate(self, z, activate: bool = True):
        """a = f(z) for the layer's activation, keeping z and a for ``_activation_gradient``.
        ``activate=False`` (a final softmax fused with the loss) returns z."""
        self._activated = activate and self.activation != "linear"
        self._z = z
        self._a = get_backend().activation_forward(self.activation, z) if self._activated else z
        return self._a

    def _activation_gradient(self, da):
        """dz = da f'(z) for the last ``_activate``."""
        if not self._activated:
            return da
        return get_backend().activation_backward(self.activation, self._z, self._a, da)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class KernelLayer(Layer):
    """A layer with a kernel and an optional bias (Dense, Conv2D), with Keras' options:
    ``use_bias``, ``kernel_initializer``, ``bias_initializer`` and ``kernel_regularizer``."""

    def __init__(self, activation=None, input_shape=None, name=None, use_bias: bool = True,
                 kernel_initializer: str = "glorot_uniform", bias_initializer: str = "zeros",
                 kernel_regularizer=None):
        super().__init__(activation, input_shape, name)
        if not isinstance(use_bias, bool):
            raise ValueError(f"use_bias must be True or False, got {use_bias!r}")
        for init in (kernel_initializer, bias_initializer):
            initializers.get(init)  # unknown names fail here, not at build
        self.use_bias = use_bias
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.last_penalty = 0.0  # the penalty at the last backward pass (part of the loss)

    def kernel_shape(self, input_shape) -> tuple[int, ...]:
        raise NotImplementedError

    def weight_specs(self, input_shape):
        kernel = self.kernel_shape(input_shape)
        specs = {"kernel": Weight(kernel, self.kernel_initializer)}
        if self.use_bias:
            specs["bias"] = Weight(kernel[-1:], self.bias_initializer)
        return specs

    @property
    def bias(self):
        return self.params.get("bias")

    def penalty(self, with_gradient: bool = False) -> float:
        """The kernel_regularizer's penalty (0 without one); adds its gradient when asked."""
        reg = self.kernel_regularizer
        if reg is None:
            return 0.0
        grad = self.grads["kernel"] if with_gradient else None
        return get_backend().weight_penalty(self.params["kernel"], reg.l1, reg.l2, grad)

    @property
    def kernel(self):
        return self.params["kernel"]

    def take_gradients(self, dw, db) -> None:
        """grads from the kernel's dW and db, plus the regularizer's penalty gradient."""
        self.grads = {"kernel": dw, "bias": db} if self.use_bias else {"kernel": dw}
        self.last_penalty = self.penalty(with_gradient=True)

    def get_config(self):
        reg = self.kernel_regularizer
        return {**super().get_config(), "activation": self.activation, "use_bias": self.use_bias,
                "kernel_initializer": self.kernel_initializer,
                "bias_initializer": self.bias_initializer,
                "kernel_regularizer": reg.get_config() if reg else None}
