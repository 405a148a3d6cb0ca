"""The contract's dense and conv kernels, primitive and fused, for a backend that computes
each product with one routine taking the fusion flags (the compiled CPU backends and CUDA:
the ReLU is the product's epilogue, its mask is applied as dy is read, and dx is skipped
for a model's first layer)."""

from __future__ import annotations

from .reference import NumpyBackend


class FlaggedProductsBackend(NumpyBackend):
    """A subclass defines ``_dense``, ``_dense_grads``, ``_conv2d`` and ``_conv2d_grads``:
    forward (relu: max(y, 0)) and backward (dx None unless need_dx; relu_output: dy masked
    by relu_output > 0 first). Such a backend runs fusion.plan's fused stages."""

    fuses = True

    def _dense(self, x, w, b, relu: bool):
        raise NotImplementedError

    def _dense_grads(self, x, w, dy, need_dx: bool, relu_output):
        raise NotImplementedError

    def _conv2d(self, x, w, b, stride, padding, relu: bool):
        raise NotImplementedError

    def _conv2d_grads(self, x, w, dy, stride, padding, need_dx: bool, relu_output):
        raise NotImplementedError

    def dense_forward(self, x, w, b):
        return self._dense(x, w, b, False)

    def dense_backward(self, x, w, dy):
        return self._dense_grads(x, w, dy, True, None)

    def dense_relu_forward(self, x, w, b):
        return self._dense(x, w, b, True)

    def dense_relu_backward(self, x, w, y, dy, need_dx):
        return self._dense_grads(x, w, dy, need_dx, y)

    def dense_weight_gradients(self, x, w, dy):
        return self._dense_grads(x, w, dy, False, None)[1:]

    def conv2d_forward(self, x, w, b, stride, padding):
        return self._conv2d(x, w, b, stride, padding, False)

    def conv2d_backward(self, x, w, dy, stride, padding):
        return self._conv2d_grads(x, w, dy, stride, padding, True, None)

    def conv2d_relu_forward(self, x, w, b, stride, padding):
        return self._conv2d(x, w, b, stride, padding, True)

    def conv2d_relu_backward(self, x, w, y, dy, stride, padding, need_dx):
        return self._conv2d_grads(x, w, dy, stride, padding, need_dx, y)

    def conv2d_weight_gradients(self, x, w, dy, stride, padding):
        return self._conv2d_grads(x, w, dy, stride, padding, False, None)[1:]
