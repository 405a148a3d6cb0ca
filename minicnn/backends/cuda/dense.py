"""Dense layers: the tiled product with its epilogue."""

from __future__ import annotations

from .matmul import matmul, weight_gradients


def dense(x, w, b, relu):
    """x W + b (relu: max(., 0)), one launch."""
    return matmul(x, w, bias=b, relu=relu)


def dense_grads(x, w, dy, need_dx, relu_output):
    """dx (None unless need_dx), dW, db; relu_output masks dy as the products load it."""
    dw, db = weight_gradients(x, dy, relu_output, w.shape)
    dx = matmul(dy, w, trans_b=True, mask_a=relu_output) if need_dx else None
    return dx, dw, db
