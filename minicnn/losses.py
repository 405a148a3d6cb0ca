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
    label_smoothing = 0.0

    def targets(self, y):
        """What the loss compares the prediction with: y itself (see CrossEntropy)."""
        return y

    def get_config(self) -> str | dict:
        """The name alone, or with the options that differ from the defaults."""
        if not self.label_smoothing:
            return self.name
        return {"name": self.name, "label_smoothing": self.label_smoothing}

    def __call__(self, pred, target, weights=None):
        return reduce(*self.kernel(pred, target), weights)

    def fused(self, logits, target, weights=None):
        return reduce(*self.fused_kernel(logits, target), weights)

    def kernel(self, pred, target):
        """(per-row losses, gradient of their mean) from the backend."""
        raise NotImplementedError

    def fused_kernel(self, logits, target):
        raise NotImplementedError


class CrossEntropy(Loss):
    """A cross-entropy with Keras' ``label_smoothing`` s in [0, 1): the targets become
    (1 - s) y + s / K (0/1 targets: + s / 2), so the model is never pushed to certainty.
    Accuracy still counts against the true classes."""

    uniform_guess = 0.5  # a 0/1 target's

    def __init__(self, label_smoothing: float = 0.0):
        if isinstance(label_smoothing, bool) or not isinstance(
                label_smoothing, (int, float, np.floating)) or not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be a number in [0, 1), got "
                             f"{label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)

    def targets(self, y):
        if not self.label_smoothing:
            return y
        uniform = self.uniform_guess or 1 / y.shape[1]
        return get_backend().smooth_labels(y, self.label_smoothing, uniform)


class CategoricalCrossentropy(CrossEntropy):
    """-mean_n sum_k y_nk log p_nk; fused with softmax through log-sum-exp."""

    name = "categorical_crossentropy"
    fuses = "softmax"
    uniform_guess = None  # 1 / K

    def kernel(self, pred, target):
        return get_backend().probability_cross_entropy(pred, target)

    def fused_kernel(self, logits, target):
        return get_backend().softmax_cross_entropy(logits, target)


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    """Categorical cross-entropy with integer labels (N,) in [0, n_classes)."""

    name = "sparse_categorical_crossentropy"
    sparse = True


class BinaryCrossentropy(CrossEntropy):
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


def from_config(config: str | dict) -> Loss:
    """The loss ``Loss.get_config`` describes (a name, or a name with options)."""
    if isinstance(config, str):
        return get(config)
    options = dict(config)
    name = options.pop("name", None)
    cls = _LOSSES.get(name) if isinstance(name, str) else None
    if cls is None or not issubclass(cls, CrossEntropy) or set(options) - {"label_smoothing"}:
        raise ValueError(f"unknown loss config {config!r:.120}")
    return cls(**options)


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
