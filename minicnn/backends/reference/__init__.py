"""The NumPy reference backend: every kernel of the contract, written to be read.

Read the modules in this order: ``dense`` (a product and its transpose), ``conv`` (im2col
turns a convolution into that product), ``pool``, ``activations``, ``losses``,
``normalization``, ``merge``, ``optimizers``; ``naive`` has convolution and pooling as the
textbook's loops, which the tests hold the vectorised versions to.

``NumpyBackend`` gathers the kernels into the class every backend inherits from: a faster
backend overrides what it makes fast and keeps the rest, so an editor can follow any
``get_backend().kernel(...)`` call to its code.
"""

from __future__ import annotations

import contextlib

from ...tally import Tally
from ..contract import check_backend_class
from . import (
    activations,
    conv,
    dense,
    elementwise,
    losses,
    memory,
    merge,
    metrics,
    normalization,
    optimizers,
    pool,
)


class NumpyBackend:
    """Every kernel in NumPy. Shapes are channels-last: images (N, H, W, C), conv kernels
    (kh, kw, C, F), dense kernels (D, U); ``contract.KERNELS`` lists each kernel's arguments."""

    name = "numpy"
    on_device = False  # arrays live in host memory
    compile_notice = None  # what fit says while a first step compiles (numba, CUDA)
    # Whether fit runs fusion.plan's fused stages on this backend (its fast kernels), or
    # each layer's own forward and backward (the textbook path, always this backend's).
    fuses = False
    # A learner's module as a backend (backends.from_module): its kernels' names, each with
    # how often it ran; None for the package's backends.
    module_calls: dict[str, int] | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        check_backend_class(cls)

    # memory
    to_device = staticmethod(memory.to_device)
    to_host = staticmethod(memory.to_host)
    zeros_like = staticmethod(memory.zeros_like)
    reshape = staticmethod(memory.reshape)
    take_rows = staticmethod(memory.take_rows)

    # convolution and pooling
    conv2d_forward = staticmethod(conv.conv2d_forward)
    conv2d_backward = staticmethod(conv.conv2d_backward)
    maxpool2d_forward = staticmethod(pool.maxpool2d_forward)
    maxpool2d_backward = staticmethod(pool.maxpool2d_backward)
    avgpool2d_forward = staticmethod(pool.avgpool2d_forward)
    avgpool2d_backward = staticmethod(pool.avgpool2d_backward)

    # dense
    dense_forward = staticmethod(dense.dense_forward)
    dense_backward = staticmethod(dense.dense_backward)

    # merges
    add_forward = staticmethod(merge.add_forward)
    add_backward = staticmethod(merge.add_backward)
    concatenate_forward = staticmethod(merge.concatenate_forward)
    concatenate_backward = staticmethod(merge.concatenate_backward)

    # element-wise and per-row
    activation_forward = staticmethod(activations.activation_forward)
    activation_backward = staticmethod(activations.activation_backward)
    multiply = staticmethod(elementwise.multiply)
    dropout = staticmethod(elementwise.dropout)
    add_scaled = staticmethod(elementwise.add_scaled)
    weight_penalty = staticmethod(elementwise.weight_penalty)
    moments = staticmethod(normalization.moments)
    moving_average = staticmethod(normalization.moving_average)
    batchnorm_forward = staticmethod(normalization.batchnorm_forward)
    batchnorm_backward = staticmethod(normalization.batchnorm_backward)

    # losses and metrics
    one_hot = staticmethod(losses.one_hot)
    smooth_labels = staticmethod(losses.smooth_labels)
    softmax_cross_entropy = staticmethod(losses.softmax_cross_entropy)
    sigmoid_binary_cross_entropy = staticmethod(losses.sigmoid_binary_cross_entropy)
    probability_cross_entropy = staticmethod(losses.probability_cross_entropy)
    probability_binary_cross_entropy = staticmethod(losses.probability_binary_cross_entropy)
    mean_squared_error = staticmethod(losses.mean_squared_error)
    count_correct = staticmethod(metrics.count_correct)
    count_top_k = staticmethod(metrics.count_top_k)
    count_binary_correct = staticmethod(metrics.count_binary_correct)

    # fused kernels: what fusion.plan runs on a backend that ``fuses``. Here each is the
    # composition of this backend's primitives, so a backend fuses whatever it lacks a fused
    # version of with its own kernels, and the tests hold the fast versions to these.

    def dense_relu_forward(self, x, w, b):
        """max(x W + b, 0): dense_forward, then the ReLU."""
        return self.activation_forward("relu", self.dense_forward(x, w, b))

    def dense_relu_backward(self, x, w, y, dy, need_dx):
        """dy through the ReLU (y is its output), then dense_backward; dx None unless
        ``need_dx`` (a model's first layer needs none)."""
        dx, dw, db = self.dense_backward(x, w, self.activation_backward("relu", y, y, dy))
        return (dx if need_dx else None), dw, db

    def dense_weight_gradients(self, x, w, dy):
        """dW and db of dense_backward, without dx (a model's first layer)."""
        return self.dense_backward(x, w, dy)[1:]

    def conv2d_relu_forward(self, x, w, b, stride, padding):
        """max(conv2d_forward(...), 0)."""
        return self.activation_forward("relu", self.conv2d_forward(x, w, b, stride, padding))

    def conv2d_relu_backward(self, x, w, y, dy, stride, padding, need_dx):
        """dy through the ReLU (y is its output), then conv2d_backward (dx as for dense)."""
        dz = self.activation_backward("relu", y, y, dy)
        dx, dw, db = self.conv2d_backward(x, w, dz, stride, padding)
        return (dx if need_dx else None), dw, db

    def conv2d_weight_gradients(self, x, w, dy, stride, padding):
        """dW and db of conv2d_backward, without dx (a model's first layer)."""
        return self.conv2d_backward(x, w, dy, stride, padding)[1:]

    def conv2d_maxpool_forward(self, x, w, b, stride, padding, pool, relu):
        """A Conv2D (with its ReLU when ``relu``) and the MaxPool2D after it, pool-sized
        windows. -> y, cache."""
        z = (self.conv2d_relu_forward if relu else self.conv2d_forward)(x, w, b, stride, padding)
        y, where = self.maxpool2d_forward(z, pool, pool, "valid")
        return y, (z, where)

    def conv2d_maxpool_backward(self, x, w, dy, y, cache, stride, padding, pool, need_dx, relu):
        """dy through the pooling (to each window's winner), then through the convolution."""
        z, where = cache
        dz = self.maxpool2d_backward(dy, where, z.shape, pool, pool, "valid")
        if relu:
            return self.conv2d_relu_backward(x, w, z, dz, stride, padding, need_dx)
        if need_dx:
            return self.conv2d_backward(x, w, dz, stride, padding)
        return (None, *self.conv2d_weight_gradients(x, w, dz, stride, padding))

    def batchnorm_relu_forward(self, x, gamma, beta, mean, var, epsilon):
        """A BatchNormalization and the ReLU after it: max(batchnorm_forward's y, 0), x_hat."""
        y, x_hat = self.batchnorm_forward(x, gamma, beta, mean, var, epsilon)
        return self.activation_forward("relu", y), x_hat

    def batchnorm_relu_backward(self, x_hat, gamma, beta, var, epsilon, y, dy, batch_stats):
        """dy through the ReLU (y is its output), then batchnorm_backward (a fast backend
        may rebuild the mask y > 0 from gamma x_hat + beta > 0 instead of reading y)."""
        return self.batchnorm_backward(x_hat, gamma, var, epsilon,
                                       self.activation_backward("relu", y, y, dy), batch_stats)

    # optimizers
    sgd_update = staticmethod(optimizers.sgd_update)
    adam_update = staticmethod(optimizers.adam_update)
    rmsprop_update = staticmethod(optimizers.rmsprop_update)

    def adam_update_many(self, params, grads, ms, vs, lr_t, beta_1, beta_2, epsilon):
        """adam_update of each parameter in turn. -> elements kept as they were, in all."""
        return sum(self.adam_update(p, g, m, v, lr_t, beta_1, beta_2, epsilon)
                   for p, g, m, v in zip(params, grads, ms, vs))

    # hooks (contract.HOOKS)
    def session(self) -> contextlib.AbstractContextManager:
        """The context a model trains or predicts in: nothing to set up here."""
        return contextlib.nullcontext()

    def step_buffers(self, owner, phase: str, batch: int) -> contextlib.AbstractContextManager:
        """The context around one step: nothing to keep between steps here."""
        return contextlib.nullcontext()

    def tally(self, steps: int, metrics: list[str]) -> Tally:
        """What keeps a fit's, an evaluation's or a step's loss and metric counts: host
        numbers, added step by step."""
        return Tally(self, steps, metrics)

    def synchronize(self) -> None:
        """Wait until the backend's queued work is done (profiling): nothing queues here."""

    def __repr__(self) -> str:
        return f"<minicnn backend {self.name!r}>"


check_backend_class(NumpyBackend)
