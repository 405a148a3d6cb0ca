"""Dense (fully connected) and Flatten."""

from __future__ import annotations

import numpy as np

from ..backends import get_backend
from .base import KernelLayer, Layer


class Dense(KernelLayer):
    """y = activation(x W + b); x (N, D), kernel W (D, units), bias b (units,)."""

    def __init__(self, units: int, activation: str | None = None, input_shape=None, name=None,
                 use_bias: bool = True, kernel_initializer: str = "glorot_uniform",
                 bias_initializer: str = "zeros", kernel_regularizer=None):
        if not isinstance(units, (int, np.integer)) or units <= 0:
            raise ValueError(f"Dense units must be a positive int, got {units!r}")
        super().__init__(activation, input_shape, name, use_bias, kernel_initializer,
                         bias_initializer, kernel_regularizer)
        self.units = int(units)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(
                f"Dense expects flat inputs (features,), got shape {tuple(input_shape)}; "
                "add Flatten() before it"
            )
        return (self.units,)

    def kernel_shape(self, input_shape):
        return (input_shape[0], self.units)

    def product(self, x, relu=False):
        return get_backend().dense_forward(x, self.params["kernel"], self.bias, relu)

    def product_backward(self, x, dy, need_input_grad=True, relu_output=None):
        return get_backend().dense_backward(x, self.params["kernel"], dy, need_input_grad,
                                            relu_output)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...), row-major like Keras (channels-last)."""

    def __init__(self, input_shape=None, name=None):
        super().__init__(None, input_shape, name)

    def compute_output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def _forward(self, x, training):
        self._shape = x.shape
        return get_backend().reshape(x, (x.shape[0], -1))

    def _backward(self, dz, need_input_grad=True):
        return get_backend().reshape(dz, self._shape)
