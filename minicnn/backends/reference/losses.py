"""Losses: each returns (its per-row values (N,) float64, the gradient of their mean).

The Loss classes (minicnn/losses.py) take the mean, or a weighted one. Softmax and
cross-entropy are computed together from the logits z: the stable form
logsumexp(z) - <y, z> never overflows, and the gradient is simply softmax(z) - y.
"""

from __future__ import annotations

import numpy as np

from .activations import stable_sigmoid


def one_hot(labels, n_classes: int):
    """Class indices (N,) (whole numbers, in the compute dtype) -> one-hot targets (N, K) in
    the same dtype. Sparse labels stay indices until a batch needs them, so K = 100,000
    classes costs N x K only per batch, never for the whole data set."""
    out = np.zeros((labels.shape[0], n_classes), labels.dtype)
    out[np.arange(labels.shape[0]), labels.astype(np.int64)] = 1
    return out


def smooth_labels(y, smoothing: float, uniform: float):
    """Label smoothing: (1 - smoothing) y + smoothing uniform, a new array of y's dtype
    (the targets move toward the uniform guess, so the model is never pushed to certainty)."""
    return (y * (1 - smoothing) + smoothing * uniform).astype(y.dtype)


def softmax_cross_entropy(logits, y):
    """rows: logsumexp(z_n) - <y_n, z_n>; dz = (softmax(z) - y) / N. y is one-hot.

    Two logits near the largest float with opposite signs differ by more than it: the
    shifted one is then -inf, whose probability is exactly 0, and a class whose target is
    0 adds 0 to the row's loss (not 0 * -inf = NaN)."""
    with np.errstate(over="ignore"):
        shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = -(y * np.where(y != 0, log_probs, 0)).sum(axis=1)
    return rows.astype(np.float64), (np.exp(log_probs) - y) / logits.shape[0]


def sigmoid_binary_cross_entropy(logits, y):
    """rows: mean over columns of log(1 + e^z) - y z (the stable form);
    dz = (sigmoid(z) - y) / size."""
    loss = np.maximum(logits, 0) - logits * y + np.log1p(np.exp(-np.abs(logits)))
    return loss.mean(axis=1, dtype=np.float64), (stable_sigmoid(logits) - y) / logits.size


def probability_cross_entropy(probs, y, eps: float = 1e-7):
    """Cross-entropy of already-normalised probabilities (Keras' from_logits=False), clipped."""
    p = np.clip(probs, eps, 1 - eps)
    n = probs.shape[0]
    grad = np.where((probs > eps) & (probs < 1 - eps), -y / p, 0) / n
    return -(y * np.log(p)).sum(axis=1, dtype=np.float64), grad.astype(probs.dtype)


def probability_binary_cross_entropy(probs, y, eps: float = 1e-7):
    """Binary cross-entropy of probabilities in (0, 1), clipped like Keras."""
    p = np.clip(probs, eps, 1 - eps)
    loss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    inside = (probs > eps) & (probs < 1 - eps)
    grad = np.where(inside, (p - y) / (p * (1 - p)), 0) / probs.size
    return loss.mean(axis=1, dtype=np.float64), grad.astype(probs.dtype)


def mean_squared_error(pred, y):
    """rows: mean over columns of (pred - y)^2; d pred = 2 (pred - y) / size."""
    diff = pred - y
    return (diff * diff).mean(axis=1, dtype=np.float64), 2 * diff / diff.size
