"""Counting right answers: a row is right when its top score is the true class."""

from __future__ import annotations


def correct_rows(pred, y, threshold: float):
    """Per row: argmax of pred == argmax of one-hot y; one column: (pred > threshold) == y."""
    if pred.shape[1] == 1:
        return (pred[:, 0] > threshold) == (y[:, 0] > 0.5)
    return pred.argmax(axis=1) == y.argmax(axis=1)


def count_correct(pred, y, threshold: float = 0.5) -> int:
    """Rows whose class is right (see correct_rows)."""
    return int(correct_rows(pred, y, threshold).sum())


def count_top_k(pred, y, k: int) -> int:
    """Rows whose true class (one-hot y) is among the k highest scores of pred."""
    true_score = (pred * y).sum(axis=1, keepdims=True)  # pred at the true class
    return int(((pred > true_score).sum(axis=1) < k).sum())


def count_binary_correct(pred, y, threshold: float = 0.5) -> float:
    """Binary accuracy's count: for each row, the fraction of its columns (independent 0/1
    labels) where (pred > threshold) == (y > 0.5), summed over the rows."""
    return float(((pred > threshold) == (y > 0.5)).mean(axis=1).sum())
