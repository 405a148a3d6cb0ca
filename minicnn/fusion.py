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

A model is a graph of ``Node``s (a ``Sequential`` is a chain of them): layers fuse only
along a chain, where the second reads the first's output and nothing else does (never
across a merge, or a tensor that feeds two layers). A layer used at several nodes runs
there unfused (``SharedUse``), its gradients summed. ``Plan.forward`` and
``Plan.backward`` walk the stages; the backward adds the gradients of a tensor that
feeds several stages (a skip connection's input).
"""

from __future__ import annotations

import copy
from typing import NamedTuple

from .backends import get_backend
from .layers import Activation, BatchNormalization, Conv2D, Dense, MaxPool2D, ReLU
from .layers.base import KernelLayer, Layer


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


class SharedUse:
    """One use of a layer that the graph calls at several nodes (shared weights, as in
    Keras): the layer's own forward and backward on a copy of it that shares its weights
    and keeps this use's inputs, so that each use's backward reads its own. The layer's
    ``grads`` are the sum over its uses: the use whose backward runs first (``primary``)
    sets them and adds the kernel_regularizer's gradient once; the others add theirs.
    ``logits``: the use is the model's output, whose activation the loss applies."""

    def __init__(self, layer: Layer, primary: bool, logits: bool = False):
        self.layer, self.primary, self.logits = layer, primary, logits
        self.layers = (layer,)

    def forward(self, x, training: bool):
        self.use = copy.copy(self.layer)  # shares params and state: the same arrays
        if not self.primary and isinstance(self.layer, KernelLayer):
            self.use.kernel_regularizer = None
        if self.logits:
            return self.use.forward(x, training, activate=False)
        return self.use.forward(x, training)

    def backward(self, dy):
        layer, dx = self.layer, self.use.backward(dy)
        if self.primary:
            layer.grads = dict(self.use.grads)
            if isinstance(layer, KernelLayer):
                layer.last_penalty = self.use.last_penalty
        else:
            add = get_backend().add_forward
            layer.grads = {key: add(layer.grads[key], g) for key, g in self.use.grads.items()}
        return dx


Stage = Layer | Logits | ProductReLU | WeightGradients | NormReLU | ConvPool | SharedUse


def layers_of(stage: Stage) -> tuple[Layer, ...]:
    """The layers a stage runs."""
    return (stage,) if isinstance(stage, Layer) else stage.layers


class Node(NamedTuple):
    """A layer called in a graph. ``inputs`` are tensor numbers: 0 is the model's input,
    k the output of node k - 1 (nodes are in topological order, so a node reads earlier
    ones); an int for a single input, a tuple for a merge layer's list."""

    layer: Layer
    inputs: int | tuple[int, ...]


def chain(layers: list[Layer]) -> list[Node]:
    """A Sequential's graph: each layer reads the one before it."""
    return [Node(layer, k) for k, layer in enumerate(layers)]


def _read(inputs: int | tuple[int, ...]) -> tuple[int, ...]:
    return inputs if isinstance(inputs, tuple) else (inputs,)


class Plan(NamedTuple):
    """The stages a model runs, in order, and their wiring: ``inputs[k]`` are the tensor
    numbers stage k reads (0 the model's input, j the output of stage j - 1; a tuple for a
    merge), ``trains[k]`` whether stage k runs backward (a stage that no weight comes
    before needs no gradient), ``to_input`` whether the backward goes on to the model's
    input."""

    stages: list[Stage]
    inputs: list[int | tuple[int, ...]]
    trains: list[bool]
    to_input: bool = False

    def forward(self, x, training: bool) -> list:
        """Every tensor of the forward pass: [x, stage 0's output, ..., the model's]."""
        values = [x]
        for stage, inputs in zip(self.stages, self.inputs):
            arg = [values[i] for i in inputs] if isinstance(inputs, tuple) else values[inputs]
            values.append(stage.forward(arg, training))
        return values

    def _needs_gradient(self, tensor: int) -> bool:
        return self.trains[tensor - 1] if tensor else self.to_input

    def backward(self, grad):
        """From d loss / d output, every stage's backward in reverse order, each tensor's
        gradient summed over the stages that read it. -> d loss / d input when
        ``to_input``, else None."""
        add = get_backend().add_forward
        grads = {len(self.stages): grad}
        for k in reversed(range(len(self.stages))):
            if not self.trains[k]:
                continue
            dx = self.stages[k].backward(grads.pop(k + 1))
            inputs = self.inputs[k]
            pairs = zip(inputs, dx) if isinstance(inputs, tuple) else [(inputs, dx)]
            for i, g in pairs:
                if self._needs_gradient(i):
                    grads[i] = add(grads[i], g) if i in grads else g
        return grads.get(0)


def _pools_in_place(conv: Layer, pool: Layer) -> bool:
    """A Conv2D whose output only the MaxPool2D after it reads, in pool-sized windows."""
    return (type(conv) is Conv2D and conv.activation in ("relu", "linear")
            and type(pool) is MaxPool2D and pool.strides == pool.pool_size
            and pool.padding == "valid")


def _is_relu(layer: Layer) -> bool:
    """A plain ReLU: the ReLU layer or Activation("relu") (not LeakyReLU and friends)."""
    return type(layer) in (ReLU, Activation) and layer.activation == "relu"


def _fused_stage(layer: Layer, after: Layer | None, need_dx: bool):
    """The fused stage that runs ``layer`` (and ``after``, the layer that alone reads its
    output, if any), or None."""
    if after is not None and _pools_in_place(layer, after):
        return ConvPool(layer, after, need_dx)
    if type(layer) is BatchNormalization and after is not None and _is_relu(after):
        return NormReLU(layer, after)
    if type(layer) in (Dense, Conv2D) and layer.activation == "relu":
        return ProductReLU(layer, need_dx)
    if type(layer) in (Dense, Conv2D) and layer.activation == "linear" and not need_dx:
        return WeightGradients(layer)
    return None


def plan(nodes: list[Node], fuse: bool, fuse_loss: bool, to_input: bool = False) -> Plan:
    """The stages the graph ``nodes`` (``chain(layers)`` for a stack) run as: each layer
    on its own, or with ``fuse`` the fused stages above where they apply. ``fuse_loss``:
    the last node (the output) stops before its activation (the loss kernel applies
    softmax or sigmoid itself). ``to_input``: the backward computes the input's gradient
    too (saliency)."""
    uses: dict[int, list[int]] = {}
    readers = [0] * (len(nodes) + 1)
    for k, node in enumerate(nodes):
        uses.setdefault(id(node.layer), []).append(k)
        for i in _read(node.inputs):
            readers[i] += 1
    needs = [to_input]  # per tensor: whether it needs a gradient
    for node in nodes:
        needs.append(bool(node.layer.params) or any(needs[i] for i in _read(node.inputs)))
    fuse_loss = fuse_loss and bool(nodes) and nodes[-1].layer.activation != "linear"
    plan_ = Plan([], [], [], to_input)
    renamed = {0: 0}  # node tensor number -> stage tensor number
    k = 0
    while k < len(nodes):
        layer, last = nodes[k].layer, k == len(nodes) - 1
        need_dx = any(needs[i] for i in _read(nodes[k].inputs))
        shared = len(uses[id(layer)]) > 1
        alone = k + 1 < len(nodes) and nodes[k + 1].inputs == k + 1 and readers[k + 1] == 1
        after = nodes[k + 1].layer if alone and len(uses[id(nodes[k + 1].layer)]) == 1 else None
        stage = None
        if shared:
            stage = SharedUse(layer, k == uses[id(layer)][-1], logits=last and fuse_loss)
        elif fuse and not (last and fuse_loss):
            stage = _fused_stage(layer, after, need_dx)
        if stage is None:
            stage = Logits(layer) if last and fuse_loss else layer
        k += len(layers_of(stage))
        plan_.stages.append(stage)
        inputs = nodes[k - len(layers_of(stage))].inputs
        plan_.inputs.append(tuple(renamed[i] for i in inputs) if isinstance(inputs, tuple)
                            else renamed[inputs])
        plan_.trains.append(needs[k])
        renamed[k] = len(plan_.stages)
    return plan_
