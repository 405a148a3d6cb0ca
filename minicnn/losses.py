"""Losses, each a mean over the batch, and their fusion with the output activation.

A cross-entropy after a softmax (or sigmoid) output is computed from the logits in one
step: log-sum-exp keeps it finite for any logits and the gradient is exactly p - y.
With per-sample weights w (``fit(sample_weight=...)`` or ``class_weight``) the loss is
Keras' sum_n w_n loss_n / N, and each row of the gradient is scaled by its w_n.
"""

from __future__ import annotations

import numpy as np

from .backends import get_backend


def reduce(rows, grad, weights=None) -> tuple[float, object]:
    """(mean of the per-row losses, gradient), weighted per row when ``weights`` (N,) given."""
    backend = get_backend()
    rows = np.asarray(backend.to_host(rows), dtype=np.float64)
    if weights is None:
        return float(rows.mean()), grad
    scale = np.broadcast_to(weights.reshape(-1, *[1] * (len(grad.shape) - 1)), grad.shape)
    scaled = backend.multiply(grad, backend.to_device(np.ascontiguousarray(scale, grad.dtype)))
    return float((weights * rows).mean()), scaled


class Loss:
    """``loss(pred, target, weights=None) -> (value, d value / d pred)``; targets are one-hot
    for CE losses, ``weights`` optional per-sample weights (N,) on the host.

    ``fuses`` names the output activation this loss absorbs: when the model's last
    layer ends in it, the model passes logits and calls ``fused`` instead.
    """

    name = ""
    fuses: str | None = None
    sparse = False  # integer labels, one-hot encoded by the model
    categorical = True  # targets are class indicators (enables label checks and accuracy)

    def __call__(self, pred, target, weights=None):
        return reduce(*self.kernel(pred, target), weights)

    def fused(self, logits, target, weights=None):
        return reduce(*self.fused_kernel(logits, target), weights)

    def kernel(self, pred, target):
        """(per-row losses, gradient of their mean) from the backend."""
        raise NotImplementedError

    def fused_kernel(self, logits, target):
        raise NotImplementedError


class CategoricalCrossentropy(Loss):
    """-mean_n sum_k y_nk log p_nk; fused with softmax through log-sum-exp."""

    name = "categorical_crossentropy"
    fuses = "softmax"

    def kernel(self, pred, target):
        return get_backend().probability_cross_entropy(pred, target)

    def fused_kernel(self, logits, target):
        return get_backend().softmax_cross_entropy(logits, target)


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    """Categorical cross-entropy with integer labels (N,) in [0, n_classes)."""

    name = "sparse_categorical_crossentropy"
    sparse = True


class BinaryCrossentropy(Loss):
    """-mean [y log p + (1 - y) log(1 - p)]; fused with sigmoid as log(1 + e^z) - y z."""

    name = "binary_crossentropy"
    fuses = "sigmoid"

    def kernel(self, pred, target):
        return get_backend().probability_binary_cross_entropy(pred, target)

    def fused_kernel(self, logits, target):
        return get_backend().sigmoid_binary_cross_entropy(logits, target)


class MeanSquaredError(Loss):
    """mean (pred - y)^2."""

    name = "mse"
    categorical = False

    def kernel(self, pred, target):
        return get_backend().mean_squared_error(pred, target)


_LOSSES = {
    cls.name: cls
    for cls in (CategoricalCrossentropy, SparseCategoricalCrossentropy, BinaryCrossentropy,
                MeanSquaredError)
}
_LOSSES["mean_squared_error"] = MeanSquaredError


def get(identifier: str | Loss) -> Loss:
    """A loss instance from its Keras name or an instance."""
    if isinstance(identifier, Loss):
        return identifier
    if not isinstance(identifier, str) or identifier not in _LOSSES:
        single = " (a Sequential model has one output, so one loss)" if isinstance(
            identifier, (list, tuple, dict)) else ""
        raise ValueError(f"unknown loss {identifier!r}{single}; expected one of "
                         f"{sorted(_LOSSES)}")
    return _LOSSES[identifier]()
