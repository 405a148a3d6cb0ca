"""Which layers run fused: the one place that plans a model's execution.

On the textbook path every layer is a stage of its own: ``fit`` calls its ``forward`` and
``backward``. A backend whose class says it ``fuses`` (numba, Cython, CUDA) runs fewer,
larger kernel calls instead, each a fused kernel of the contract:

- a Dense or Conv2D with ``activation="relu"``: ``dense_relu_*`` / ``conv2d_relu_*``, the
  ReLU in the product's epilogue and its mask applied as dy is read (``ProductReLU``);
- a BatchNormalization and the ReLU after it: ``batchnorm_relu_*`` (``NormReLU``);
- a Conv2D (ReLU or no activation) and the MaxPool2D after it with pool-sized 'valid'
  windows: ``conv2d_maxpool_*``, which a compiled backend pools while each image's output
  is in cache (``ConvPool``);
- the model's first layer with weights computes no input gradient (``need_dx=False``, or
  ``*_weight_gradients`` for a layer with no activation: ``WeightGradients``).

On every path the last layer's softmax (or sigmoid) is left to the loss, which takes the
logits (``Logits``): softmax with cross-entropy is one kernel in the textbook too. The
tests hold every fused plan to the textbook path's numbers.
"""

from __future__ import annotations

from typing import NamedTuple

from .backends import get_backend
from .layers import Activation, BatchNormalization, Conv2D, Dense, MaxPool2D, ReLU
from .layers.base import Layer


class Logits:
    """The last layer without its softmax or sigmoid, which the loss kernel applies."""

    def __init__(self, layer: Layer):
        self.layer = layer
        self.layers = (layer,)

    def forward(self, x, training: bool):
        return self.layer.forward(x, training, activate=False)

    def backward(self, dy):
        return self.layer.backward(dy)


class ProductReLU:
    """A Dense or Conv2D and its ReLU as one kernel call each way."""

    def __init__(self, layer: Dense | Conv2D, need_dx: bool):
        self.layer, self.need_dx = layer, need_dx
        self.layers = (layer,)

    def forward(self, x, training: bool):
        layer, backend = self.layer, get_backend()
        self.x = x
        if isinstance(layer, Conv2D):
            self.y = backend.conv2d_relu_forward(x, layer.kernel, layer.bias, layer.strides,
                                                 layer.padding)
        else:
            self.y = backend.dense_relu_forward(x, layer.kernel, layer.bias)
        return self.y

    def backward(self, dy):
        layer, backend = self.layer, get_backend()
        if isinstance(layer, Conv2D):
            dx, dw, db = backend.conv2d_relu_backward(self.x, layer.kernel, self.y, dy,
                                                      layer.strides, layer.padding,
                                                      self.need_dx)
        else:
            dx, dw, db = backend.dense_relu_backward(self.x, layer.kernel, self.y, dy,
                                                     self.need_dx)
        layer.take_gradients(dw, db)
        return dx


class WeightGradients:
    """A Dense or Conv2D without activation as a model's first layer with weights: its own
    forward, and a backward that computes dW and db only."""

    def __init__(self, layer: Dense | Conv2D):
        self.layer = layer
        self.layers = (layer,)

    def forward(self, x, training: bool):
        self.x = x
        return self.layer.forward(x, training)

    def backward(self, dy):
        layer, backend = self.layer, get_backend()
        if isinstance(layer, Conv2D):
            dw, db = backend.conv2d_weight_gradients(self.x, layer.kernel, dy, layer.strides,
                                                     layer.padding)
        else:
            dw, db = backend.dense_weight_gradients(self.x, layer.kernel, dy)
        layer.take_gradients(dw, db)
        return None


class NormReLU:
    """A BatchNormalization and the ReLU after it as one kernel call each way."""

    def __init__(self, norm: BatchNormalization, relu: Layer):
        self.norm = norm
        self.layers = (norm, relu)

    def forward(self, x, training: bool):
        norm, backend, c = self.norm, get_backend(), x.shape[len(x.shape) - 1]
        rows = backend.reshape(x, (x.size // c, c))
        mean, self.var = norm.statistics(rows, training)
        y, self.x_hat = backend.batchnorm_relu_forward(
            rows, norm.params["gamma"], norm.params["beta"], mean, self.var, norm.epsilon)
        self.y, self.training = y, training
        return backend.reshape(y, x.shape)

    def backward(self, dy):
        norm, backend, c = self.norm, get_backend(), dy.shape[len(dy.shape) - 1]
        dx, dgamma, dbeta = backend.batchnorm_relu_backward(
            self.x_hat, norm.params["gamma"], norm.params["beta"], self.var, norm.epsilon,
            self.y, backend.reshape(dy, (dy.size // c, c)), self.training)
        norm.grads = {"gamma": dgamma, "beta": dbeta}
        return backend.reshape(dx, dy.shape)


class ConvPool:
    """A Conv2D (with its ReLU, if any) and the MaxPool2D after it as one kernel pair."""

    def __init__(self, conv: Conv2D, pool: MaxPool2D, need_dx: bool):
        self.conv, self.pool, self.need_dx = conv, pool, need_dx
        self.layers = (conv, pool)

    def forward(self, x, training: bool):
        conv = self.conv
        self.x = x
        self.y, self.cache = get_backend().conv2d_maxpool_forward(
            x, conv.kernel, conv.bias, conv.strides, conv.padding, self.pool.pool_size,
            conv.activation == "relu")
        return self.y

    def backward(self, dy):
        conv = self.conv
        dx, dw, db = get_backend().conv2d_maxpool_backward(
            self.x, conv.kernel, dy, self.y, self.cache, conv.strides, conv.padding,
            self.pool.pool_size, self.need_dx, conv.activation == "relu")
        conv.take_gradients(dw, db)
        return dx


Stage = Layer | Logits | ProductReLU | WeightGradients | NormReLU | ConvPool


def layers_of(stage: Stage) -> tuple[Layer, ...]:
    """The layers a stage runs."""
    return (stage,) if isinstance(stage, Layer) else stage.layers


class Plan(NamedTuple):
    """The stages a model runs, in order; the backward runs ``stages[first:]`` (the stages
    before the first layer with weights need no gradient)."""

    stages: list[Stage]
    first: int


def _pools_in_place(conv: Layer, pool: Layer) -> bool:
    """A Conv2D whose output only the MaxPool2D after it reads, in pool-sized windows."""
    return (type(conv) is Conv2D and conv.activation in ("relu", "linear")
            and type(pool) is MaxPool2D and pool.strides == pool.pool_size
            and pool.padding == "valid")


def _is_relu(layer: Layer) -> bool:
    """A plain ReLU: the ReLU layer or Activation("relu") (not LeakyReLU and friends)."""
    return type(layer) in (ReLU, Activation) and layer.activation == "relu"


def _fused_stage(layers: list[Layer], i: int, first: int):
    """The fused stage that starts at ``layers[i]``, or None."""
    layer, need_dx = layers[i], i > first
    after = layers[i + 1] if i + 1 < len(layers) else None
    if after is not None and _pools_in_place(layer, after):
        return ConvPool(layer, after, need_dx)
    if type(layer) is BatchNormalization and after is not None and _is_relu(after):
        return NormReLU(layer, after)
    if type(layer) in (Dense, Conv2D) and layer.activation == "relu":
        return ProductReLU(layer, need_dx)
    if type(layer) in (Dense, Conv2D) and layer.activation == "linear" and not need_dx:
        return WeightGradients(layer)
    return None


def plan(layers: list[Layer], fuse: bool, fuse_loss: bool) -> Plan:
    """The stages ``layers`` run as: each layer on its own, or with ``fuse`` the fused
    stages above where they apply. ``fuse_loss``: the last layer stops before its
    activation (the loss kernel applies softmax or sigmoid itself)."""
    first = next((i for i, layer in enumerate(layers) if layer.params), len(layers))
    fuse_loss = fuse_loss and bool(layers) and layers[-1].activation != "linear"
    stages: list[Stage] = []
    first_stage = None
    i = 0
    while i < len(layers):
        if first_stage is None and i >= first:
            first_stage = len(stages)
        last = i == len(layers) - 1
        stage = None if last and fuse_loss else _fused_stage(layers, i, first) if fuse else None
        if stage is None:
            stage = Logits(layers[i]) if last and fuse_loss else layers[i]
        stages.append(stage)
        i += len(layers_of(stage))
    return Plan(stages, len(stages) if first_stage is None else first_stage)

