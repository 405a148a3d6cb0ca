"""Losses, each a mean over the batch, and their fusion with the output activation.

A cross-entropy after a softmax (or sigmoid) output is computed from the logits in one
step: log-sum-exp keeps it finite for any logits and the gradient is exactly p - y.
"""

from __future__ import annotations

from .backends import get_backend


class Loss:
    """``loss(pred, target) -> (value, d value / d pred)``; targets are one-hot for CE losses.

    ``fuses`` names the output activation this loss absorbs: when the model's last
    layer ends in it, the model passes logits and calls ``fused`` instead.
    """

    name = ""
    fuses: str | None = None
    sparse = False  # integer labels, one-hot encoded by the model
    categorical = True  # targets are class indicators (enables label checks and accuracy)

    def __call__(self, pred, target):
        raise NotImplementedError

    def fused(self, logits, target):
        raise NotImplementedError


class CategoricalCrossentropy(Loss):
    """-mean_n sum_k y_nk log p_nk; fused with softmax through log-sum-exp."""

    name = "categorical_crossentropy"
    fuses = "softmax"

    def __call__(self, pred, target):
        return get_backend().probability_cross_entropy(pred, target)

    def fused(self, logits, target):
        return get_backend().softmax_cross_entropy(logits, target)


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    """Categorical cross-entropy with integer labels (N,) in [0, n_classes)."""

    name = "sparse_categorical_crossentropy"
    sparse = True


class BinaryCrossentropy(Loss):
    """-mean [y log p + (1 - y) log(1 - p)]; fused with sigmoid as log(1 + e^z) - y z."""

    name = "binary_crossentropy"
    fuses = "sigmoid"

    def __call__(self, pred, target):
        return get_backend().probability_binary_cross_entropy(pred, target)

    def fused(self, logits, target):
        return get_backend().sigmoid_binary_cross_entropy(logits, target)


class MeanSquaredError(Loss):
    """mean (pred - y)^2."""

    name = "mse"
    categorical = False

    def __call__(self, pred, target):
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
    if identifier not in _LOSSES:
        raise ValueError(f"unknown loss {identifier!r}; expected one of {sorted(_LOSSES)}")
    return _LOSSES[identifier]()
