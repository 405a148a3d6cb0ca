"""Stand-alone activation layers: Activation(name), ReLU, Sigmoid, Softmax."""

from __future__ import annotations

from .base import Layer


class Activation(Layer):
    """Applies ``activation`` element-wise (softmax: over the last axis); no parameters."""

    def __init__(self, activation: str, input_shape=None, name=None):
        super().__init__(activation, input_shape, name)

    def forward(self, x, training=False, activate=True):
        return self._activate(x, activate)

    def backward(self, dy):
        return self._activation_gradient(dy)

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}


class ReLU(Activation):
    """max(x, 0)."""

    def __init__(self, input_shape=None, name=None):
        super().__init__("relu", input_shape, name)

    def get_config(self):
        return Layer.get_config(self)


class Sigmoid(Activation):
    """1 / (1 + exp(-x))."""

    def __init__(self, input_shape=None, name=None):
        super().__init__("sigmoid", input_shape, name)

    def get_config(self):
        return Layer.get_config(self)


class Softmax(Activation):
    """exp(x_i) / sum_j exp(x_j) over the last axis."""

    def __init__(self, input_shape=None, name=None):
        super().__init__("softmax", input_shape, name)

    def get_config(self):
        return Layer.get_config(self)
