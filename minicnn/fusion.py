"""Which layers run fused: the one place that plans a model's execution.

A layer's own forward and backward are the textbook's (the product, then the activation).
For speed, ``plan`` groups layers into stages that each run as fewer kernel calls:

- a Dense or Conv2D with ``activation="relu"``: the product's epilogue applies the ReLU,
  and its backward takes the output to mask dy (``ProductReLU``);
- a BatchNormalization and the ReLU after it: the normalising pass applies the ReLU, and
  the backward masks dy by gamma x_hat + beta > 0 as it reads x_hat (``NormReLU``);
- a Conv2D (ReLU or no activation) and the MaxPool2D after it with pool-sized 'valid'
  windows: one kernel pair, ``conv2d_maxpool_forward``/``_backward`` (``ConvPool``), which a
  compiled backend runs pooling each image while it is in cache, and the reference
  composes from its own conv and pool kernels;
- the last layer's softmax (or sigmoid) with the cross-entropy that follows it: the stage
  stops before the activation and the loss kernel takes the logits (``fuse_loss``).

Every backend runs every plan: a backend without a fused kernel inherits the reference's
composition of its own primitives, so fusing changes speed, never results.
"""

from __future__ import annotations

from .backends import get_backend
from .layers import Activation, BatchNormalization, Conv2D, MaxPool2D, ReLU
from .layers.base import KernelLayer, Layer


class LayerStage:
    """One layer on its own: its textbook forward and backward."""

    def __init__(self, layer: Layer, activate: bool = True):
        self.layer, self.activate = layer, activate
        self.layers = (layer,)

    def forward(self, x, training: bool):
        return self.layer.forward(x, training=training, activate=self.activate)

    def backward(self, dy, need_input_grad: bool):
        return self.layer.backward(dy, need_input_grad)

    @property
    def output(self):
        """What the last forward returned."""
        return self.layer._output


class ProductReLU:
    """A Dense or Conv2D and its ReLU as one kernel call each way."""

    def __init__(self, layer: KernelLayer):
        self.layer = layer
        self.layers = (layer,)

    def forward(self, x, training: bool):
        self.x = x
        self.y = self.layer.product(x, relu=True)
        return self.y

    def backward(self, dy, need_input_grad: bool):
        dx, dw, db = self.layer.product_backward(self.x, dy, need_input_grad, relu_output=self.y)
        self.layer.take_gradients(dw, db)
        return dx

    @property
    def output(self):
        """What the last forward returned."""
        return self.y


class NormReLU:
    """A BatchNormalization and the ReLU after it as one kernel call each way."""

    def __init__(self, norm: BatchNormalization, relu: Layer):
        self.norm = norm
        self.layers = (norm, relu)

    def forward(self, x, training: bool):
        self.y = self.norm.normalize(x, training, relu=True)
        return self.y

    def backward(self, dy, need_input_grad: bool):
        return self.norm.backward(dy, need_input_grad)

    @property
    def output(self):
        """What the last forward returned."""
        return self.y


class ConvPool:
    """A Conv2D (with its ReLU, if any) and the MaxPool2D after it as one kernel pair."""

    def __init__(self, conv: Conv2D, pool: MaxPool2D):
        self.conv, self.pool = conv, pool
        self.layers = (conv, pool)

    def forward(self, x, training: bool):
        conv = self.conv
        self.x = x
        self.y, self.cache = get_backend().conv2d_maxpool_forward(
            x, conv.params["kernel"], conv.bias, conv.strides, conv.padding,
            self.pool.pool_size, conv.activation == "relu")
        return self.y

    def backward(self, dy, need_input_grad: bool):
        conv = self.conv
        dx, dw, db = get_backend().conv2d_maxpool_backward(
            self.x, conv.params["kernel"], dy, self.y, self.cache, conv.strides, conv.padding,
            self.pool.pool_size, need_input_grad, conv.activation == "relu")
        conv.take_gradients(dw, db)
        return dx

    @property
    def output(self):
        """What the last forward returned: the pooled output (the convolution's own output
        is never stored whole on the compiled backends)."""
        return self.y


Stage = LayerStage | ProductReLU | NormReLU | ConvPool


def _pools_in_place(conv: Layer, pool: Layer) -> bool:
    """A Conv2D whose output only the MaxPool2D after it reads, in pool-sized windows."""
    return (type(conv) is Conv2D and conv.activation in ("relu", "linear")
            and type(pool) is MaxPool2D and pool.strides == pool.pool_size
            and pool.padding == "valid")


def _is_relu(layer: Layer) -> bool:
    """A plain ReLU: the ReLU layer or Activation("relu") (not LeakyReLU and friends)."""
    return type(layer) in (ReLU, Activation) and layer.activation == "relu"


def plan(layers: list[Layer], fuse_loss: bool = False) -> list[Stage]:
    """The stages ``layers`` run as, in order. ``fuse_loss``: the last layer stops before
    its activation (the loss kernel applies softmax or sigmoid itself)."""
    stages: list[Stage] = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        last = i == len(layers) - 1
        if not last and _pools_in_place(layer, layers[i + 1]):
            stages.append(ConvPool(layer, layers[i + 1]))
        elif type(layer) is BatchNormalization and not last and _is_relu(layers[i + 1]):
            stages.append(NormReLU(layer, layers[i + 1]))
        elif isinstance(layer, KernelLayer) and layer.activation == "relu":
            stages.append(ProductReLU(layer))
        else:
            stages.append(LayerStage(layer, activate=not (last and fuse_loss)))
        i += len(stages[-1].layers)
    return stages
