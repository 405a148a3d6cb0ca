"""Classification metrics computed on host arrays."""

from __future__ import annotations

import numpy as np


def accuracy(y_true, y_pred) -> float:
    """Fraction of equal labels; ``y_pred`` may be labels (N,) or scores (N, K)."""
    y_pred = np.asarray(y_pred)
    labels = y_pred.argmax(axis=1) if y_pred.ndim == 2 else y_pred
    return float(np.mean(labels == np.asarray(y_true)))


def confusion_matrix(y_true, y_pred, n_classes: int | None = None) -> np.ndarray:
    """counts[i, j] = how many samples of true class i were predicted as class j."""
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    n = n_classes or int(max(y_true.max(), y_pred.max()) + 1)
    counts = np.zeros((n, n), dtype=np.int64)
    np.add.at(counts, (y_true, y_pred), 1)
    return counts


# compile(metrics=[...]) names -> (the name its logs use, k: right when the true class is
# among the k highest scores). Targets are one-hot inside the model, so the sparse and
# categorical variants count the same way.
TRAINING_METRICS = {
    "accuracy": ("accuracy", 1),
    "acc": ("accuracy", 1),
    "categorical_accuracy": ("categorical_accuracy", 1),
    "sparse_categorical_accuracy": ("sparse_categorical_accuracy", 1),
    "top_k_categorical_accuracy": ("top_k_categorical_accuracy", 5),
    "sparse_top_k_categorical_accuracy": ("sparse_top_k_categorical_accuracy", 5),
}
