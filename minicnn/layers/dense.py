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

    def forward(self, x, training=False, activate=True):
        """y = f(x W + b) (``activate=False``: x W + b)."""
        self._x = x
        return self._activate(get_backend().dense_forward(x, self.kernel, self.bias), activate)

    def backward(self, dy):
        """dz = dy f'(z), then dx = dz W^T, dW = x^T dz, db = sum of dz."""
        dz = self._activation_gradient(dy)
        dx, dw, db = get_backend().dense_backward(self._x, self.kernel, dz)
        self.take_gradients(dw, db)
        return dx

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...), row-major like Keras (channels-last)."""

    def __init__(self, input_shape=None, name=None):
        super().__init__(None, input_shape, name)

    def compute_output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, x, training=False):
        self._shape = x.shape
        return get_backend().reshape(x, (x.shape[0], -1))

    def backward(self, dy):
        return get_backend().reshape(dy, self._shape)
