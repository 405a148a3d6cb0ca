"""Dense (fully connected) and Flatten."""

from __future__ import annotations

import numpy as np

from .. import config
from ..backends import get_backend
from .base import Layer, glorot_uniform


class Dense(Layer):
    """y = activation(x W + b); x (N, D), kernel W (D, units), bias b (units,)."""

    def __init__(self, units: int, activation: str | None = None, input_shape=None, name=None):
        if not isinstance(units, (int, np.integer)) or units <= 0:
            raise ValueError(f"Dense units must be a positive int, got {units!r}")
        super().__init__(activation, input_shape, name)
        self.units = int(units)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(
                f"Dense expects flat inputs (features,), got shape {tuple(input_shape)}; "
                "add Flatten() before it"
            )
        return (self.units,)

    def param_shapes(self, input_shape):
        return {"kernel": (input_shape[0], self.units), "bias": (self.units,)}

    def _init_params(self, input_shape, rng):
        d = input_shape[0]
        return {
            "kernel": glorot_uniform((d, self.units), d, self.units, rng),
            "bias": np.zeros(self.units, dtype=config.dtype()),
        }

    def _forward(self, x, training):
        self._x = x
        return get_backend().dense_forward(x, self.params["kernel"], self.params["bias"])

    def _backward(self, dz, need_input_grad=True):
        dx, dw, db = get_backend().dense_backward(self._x, self.params["kernel"], dz)
        self.grads = {"kernel": dw, "bias": db}
        return dx

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation}


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...), row-major like Keras (channels-last)."""

    def __init__(self, input_shape=None, name=None):
        super().__init__(None, input_shape, name)

    def compute_output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def _forward(self, x, training):
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def _backward(self, dz, need_input_grad=True):
        return dz.reshape(self._shape)
