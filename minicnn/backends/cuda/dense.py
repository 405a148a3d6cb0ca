"""Dense layers: the tiled product with its epilogue."""

from __future__ import annotations

from .matmul import _weight_gradients, matmul


def dense_forward(x, w, b, relu=False):
    return matmul(x, w, bias=b, relu=relu)


def dense_backward(x, w, dy, need_dx=True, relu_output=None):
    dw, db = _weight_gradients(x, dy, relu_output, w.shape)
    dx = matmul(dy, w, trans_b=True, mask_a=relu_output) if need_dx else None
    return dx, dw, db



