"""The figures people look at. Each function returns a matplotlib Figure and saves it to
``path`` when given. Figures are built without pyplot, so they work on headless machines.
"""

from __future__ import annotations

import math
import os

import numpy as np
from matplotlib.figure import Figure

from .backends import to_numpy
from .datasets import CLASS_NAMES
from .metrics import confusion_matrix


def _finish(fig: Figure, path: str | os.PathLike | None) -> Figure:
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def _image(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x[..., 0] if x.ndim == 3 and x.shape[-1] == 1 else x


def plot_samples(x, y, class_names=CLASS_NAMES, n: int = 25, path=None) -> Figure:
    """A grid of the first ``n`` images titled with their class names."""
    n = min(n, len(x))
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(1.6 * cols, 1.8 * rows))
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(_image(x[i]), cmap="binary")
        ax.set_title(class_names[int(y[i])], fontsize=8)
        ax.axis("off")
    return _finish(fig, path)


def plot_history(history, path=None) -> Figure:
    """Loss and accuracy per epoch, training and (if present) validation."""
    logs = getattr(history, "history", history)
    panels = [k for k in ("loss", "accuracy") if k in logs]
    fig = Figure(figsize=(5 * len(panels), 4))
    for i, key in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        epochs = np.arange(1, len(logs[key]) + 1)
        ax.plot(epochs, logs[key], "o-", label=f"training {key}")
        if "val_" + key in logs:
            ax.plot(epochs, logs["val_" + key], "s--", label=f"validation {key}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.legend()
        ax.grid(alpha=0.3)
    return _finish(fig, path)


def plot_filters(layer_or_kernel, path=None, max_filters: int = 64) -> Figure:
    """A conv layer's kernels (kh, kw, in, filters) as images, first input channel."""
    kernel = layer_or_kernel
    if hasattr(layer_or_kernel, "params"):
        kernel = to_numpy(layer_or_kernel.params["kernel"])
    kernel = np.asarray(kernel)
    if kernel.ndim != 4:
        raise ValueError(f"expected a Conv2D layer or a kernel (kh, kw, in, filters), "
                         f"got shape {kernel.shape}")
    n = min(kernel.shape[3], max_filters)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(1.2 * cols, 1.2 * rows))
    limit = np.abs(kernel[..., 0, :n]).max() or 1.0
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(kernel[:, :, 0, i], cmap="coolwarm", vmin=-limit, vmax=limit)
        ax.axis("off")
    return _finish(fig, path)


def plot_prediction(image, probs, true_label: int, class_names=CLASS_NAMES, path=None) -> Figure:
    """One image and its predicted probabilities: true class blue, a wrong prediction red."""
    probs = np.asarray(probs)
    predicted = int(probs.argmax())
    fig = Figure(figsize=(8, 3))
    ax = fig.add_subplot(1, 2, 1)
    ax.imshow(_image(image), cmap="binary")
    color = "blue" if predicted == true_label else "red"
    ax.set_title(f"{class_names[predicted]} {probs[predicted]:.0%} "
                 f"({class_names[true_label]})", color=color)
    ax.axis("off")
    ax = fig.add_subplot(1, 2, 2)
    bars = ax.bar(range(len(probs)), probs, color="#777777")
    bars[predicted].set_color("red")
    bars[true_label].set_color("blue")
    ax.set_ylim(0, 1)
    ax.set_xticks(range(len(probs)))
    ax.set_xticklabels(class_names, rotation=90)
    return _finish(fig, path)


def plot_confusion_matrix(y_true, y_pred, class_names=CLASS_NAMES, path=None) -> Figure:
    """Counts of true (rows) against predicted (columns) classes."""
    counts = confusion_matrix(y_true, y_pred, len(class_names))
    fig = Figure(figsize=(7, 6))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ticks = range(len(class_names))
    ax.set_xticks(ticks)
    ax.set_xticklabels(class_names, rotation=90)
    ax.set_yticks(ticks)
    ax.set_yticklabels(class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), value in np.ndenumerate(counts):
        ax.text(j, i, str(value), ha="center", va="center", fontsize=7,
                color="white" if value > counts.max() / 2 else "black")
    return _finish(fig, path)
