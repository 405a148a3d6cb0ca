"""The figures people look at. Each function returns a matplotlib Figure and saves it to
``path`` when given. Figures are built without pyplot, so they work on headless machines,
and show themselves inline when a Jupyter cell returns one (``Figure._repr_png_``).
"""

from __future__ import annotations

import io
import math
import os

import numpy as np
from matplotlib.figure import Figure as _MatplotlibFigure
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator

from .backends import to_numpy
from .datasets import CLASS_NAMES
from .fusion import SharedUse, layers_of
from .layers.base import Layer
from .metrics import confusion_matrix


class Figure(_MatplotlibFigure):
    """A matplotlib Figure that Jupyter (IPython) draws inline as a PNG, no pyplot needed."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()


def _finish(fig: Figure, path: str | os.PathLike | None, rect=(0, 0, 1, 1)) -> Figure:
    """Lay the figure out (inside ``rect``, figure fractions) and save it to ``path``."""
    fig.tight_layout(rect=rect)
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def _image(x: np.ndarray) -> np.ndarray:
    """An (H, W, C) image as imshow takes it: RGB as it is, otherwise its first channel."""
    x = np.asarray(x)
    return x[..., 0] if x.ndim == 3 and x.shape[-1] != 3 else x


def _check_class_names(class_names, labels, what: str) -> None:
    """``class_names`` names every class in ``labels`` (class indices): a ValueError before
    anything is drawn."""
    labels = np.asarray(labels).ravel()
    if not labels.size:
        return
    if not (np.issubdtype(labels.dtype, np.integer) or np.array_equal(labels, np.round(labels))):
        raise ValueError(f"{what} must be class indices (integers), got {labels[:5]}")
    if labels.min() < 0:
        raise ValueError(f"{what} must be class indices >= 0, got {labels.min():g}")
    if len(class_names) <= labels.max():
        raise ValueError(f"class_names has {len(class_names)} names, but {what} needs "
                         f"{int(labels.max()) + 1} classes: pass one name per class, e.g. "
                         "class_names=[str(k) for k in range(K)]")


def _check_images(x, what: str) -> np.ndarray:
    """``x`` as images, (N, H, W) or (N, H, W, C): a ValueError naming the shape if not."""
    x = np.asarray(x)
    if x.ndim not in (3, 4):
        raise ValueError(f"{what} must be images, (N, H, W) or (N, H, W, C), got shape "
                         f"{x.shape}; flat inputs (a Dense-only model's) can be drawn "
                         "reshaped, e.g. x.reshape(-1, 28, 28, 1)")
    return x


def plot_samples(x, y, class_names=CLASS_NAMES, n: int = 25, path=None, predicted=None,
                 title: str | None = None) -> Figure:
    """A grid of the first ``n`` images.

    Without ``predicted`` each image is titled with its label ``y``. With it, each is titled
    with the predicted class: black when right, red with the true class below when wrong.
    """
    x = _check_images(x, "x")
    n = min(n, len(x))
    _check_class_names(class_names, np.asarray(y)[:n], "y")
    if predicted is not None:
        _check_class_names(class_names, np.asarray(predicted)[:n], "predicted")
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(1.7 * cols, 2.0 * rows + 0.6))
    wrong = 0
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(_image(x[i]), cmap="binary")
        ax.axis("off")
        true = class_names[int(y[i])]
        if predicted is None:
            ax.set_title(true, fontsize=8)
            continue
        guess = class_names[int(predicted[i])]
        if guess == true:
            ax.set_title(guess, fontsize=8)
        else:
            wrong += 1
            ax.set_title(f"{guess}\n(true: {true})", fontsize=8, color="red")
    if title is None:
        title = ("label of each image" if predicted is None else
                 f"predicted class of each image; red: wrong ({wrong} of {n}), true class below")
    fig.suptitle(title, fontsize=10)
    return _finish(fig, path)


def plot_history(history, path=None, val_name: str = "validation",
                 title: str = "Training history") -> Figure:
    """Loss and accuracy per epoch: training, and held-out data if present: the ``val_*``
    curves (measured on ``val_name``) and the ``test_*`` ones (the test set)."""
    logs = getattr(history, "history", history)
    panels = [k for k in ("loss", "accuracy") if k in logs]
    fig = Figure(figsize=(5 * len(panels), 4.3))
    for i, key in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        epochs = np.arange(1, len(logs[key]) + 1)
        ax.plot(epochs, logs[key], "o-", label=f"training {key}")
        for prefix, name, style in (("val_", val_name, "s--"), ("test_", "test set", "^:")):
            if prefix + key in logs:
                ax.plot(epochs, logs[prefix + key], style, label=f"{name} {key}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(key)
        ax.set_title(f"{key} per epoch")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return _finish(fig, path)


def plot_filters(layer_or_kernel, path=None, max_filters: int = 64,
                 title: str = "Convolution kernels (first input channel)") -> Figure:
    """A conv layer's kernels (kh, kw, in, filters) as images, first input channel.

    Each kernel is divided by its own largest |weight|, so every one uses the full
    diverging scale: red positive, blue negative, white zero.
    """
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
    fig = Figure(figsize=(1.2 * cols + 1.2, 1.2 * rows + 0.8))
    image = None
    for i in range(n):
        k = kernel[:, :, 0, i]
        ax = fig.add_subplot(rows, cols, i + 1)
        image = ax.imshow(k / (np.abs(k).max() or 1.0), cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set_title(str(i), fontsize=7)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    bar = fig.colorbar(image, ax=fig.axes, fraction=0.04, pad=0.04)
    bar.set_label("weight / largest |weight| of that kernel")
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def plot_prediction(image, probs, true_label: int, class_names=CLASS_NAMES, path=None) -> Figure:
    """One image and its predicted probabilities: true class blue, a wrong prediction red."""
    probs = np.asarray(probs)
    if probs.ndim != 1:
        raise ValueError(f"probs must be one image's probabilities, shape (K,), got shape "
                         f"{probs.shape}")
    if len(class_names) != len(probs):
        raise ValueError(f"class_names has {len(class_names)} names, but probs has "
                         f"{len(probs)} classes: pass one name per class")
    _check_class_names(class_names, [true_label], "true_label")
    predicted = int(probs.argmax())
    fig = Figure(figsize=(8, 3))
    ax = fig.add_subplot(1, 2, 1)
    ax.imshow(_image(image), cmap="binary")
    color = "blue" if predicted == true_label else "red"
    ax.set_title(f"predicted {class_names[predicted]} ({probs[predicted]:.0%})\n"
                 f"true: {class_names[true_label]}", color=color)
    ax.axis("off")
    ax = fig.add_subplot(1, 2, 2)
    bars = ax.bar(range(len(probs)), probs, color="#777777")
    bars[predicted].set_color("red")
    bars[true_label].set_color("blue")
    ax.set_ylim(0, 1)
    ax.set_ylabel("predicted probability")
    ax.set_xticks(range(len(probs)))
    ax.set_xticklabels(class_names, rotation=90)
    ax.legend(handles=[Patch(color="blue", label="true class"),
                       Patch(color="red", label="predicted class, when wrong"),
                       Patch(color="#777777", label="other classes")], fontsize=8)
    return _finish(fig, path)


def plot_confusion_matrix(y_true, y_pred, class_names=CLASS_NAMES, path=None,
                          title: str | None = None) -> Figure:
    """Counts of true (rows) against predicted (columns) classes, titled with the accuracy."""
    _check_class_names(class_names, y_true, "y_true")
    _check_class_names(class_names, y_pred, "y_pred")
    counts = confusion_matrix(y_true, y_pred, len(class_names))
    total = int(counts.sum())
    if title is None:
        title = (f"Confusion matrix of {total:,} images\n"
                 f"accuracy {np.trace(counts) / max(total, 1):.2%}")
    fig = Figure(figsize=(7, 6))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ticks = range(len(class_names))
    ax.set_xticks(ticks)
    ax.set_xticklabels(class_names, rotation=90)
    ax.set_yticks(ticks)
    ax.set_yticklabels(class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    for (i, j), value in np.ndenumerate(counts):
        ax.text(j, i, str(value), ha="center", va="center", fontsize=7,
                color="white" if value > counts.max() / 2 else "black")
    return _finish(fig, path)


def plot_feature_maps(maps: dict, layer: str | None = None, image: int = 0,
                      max_maps: int = 32, path=None) -> Figure:
    """The channels of one layer's output for one image (``inspect.feature_maps``' dict),
    each on its own colour scale: the first convolution's by default."""
    images = {name: m for name, m in maps.items() if np.ndim(m) == 4}
    if not images:
        raise ValueError("no layer in these maps has image outputs (N, H, W, C)")
    name = layer if layer is not None else next(iter(images))
    if name not in images:
        raise ValueError(f"no image-shaped map for layer {name!r}; those with one are "
                         f"{list(images)}")
    planes = images[name][image]
    count = min(planes.shape[-1], max_maps)
    cols = min(8, count)
    rows = math.ceil(count / cols)
    fig = Figure(figsize=(1.4 * cols, 1.5 * rows + 0.6))
    for k in range(count):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(planes[:, :, k], cmap="viridis")
        ax.set_title(f"{k}", fontsize=7)
        ax.axis("off")
    fig.suptitle(f"{name}: {count} of {planes.shape[-1]} feature maps of image {image} "
                 f"({planes.shape[0]}x{planes.shape[1]})", fontsize=10)
    return _finish(fig, path)


def plot_saliency(x, saliency, y_true=None, predicted=None, class_names=CLASS_NAMES,
                  path=None, n: int = 6) -> Figure:
    """Images (top) and their saliency (bottom): the largest |d score / d pixel| over
    channels, brightest where a pixel changes the class score most. Wrong predictions in red."""
    x, saliency = _check_images(x, "x")[:n], _check_images(saliency, "saliency")[:n]
    if x.shape != saliency.shape:
        raise ValueError(f"saliency must have x's shape {x.shape} (inspect.saliency(model, "
                         f"x)), got {saliency.shape}")
    if x.ndim == 3:  # (N, H, W): one channel
        x, saliency = x[..., None], saliency[..., None]
    saliency = np.abs(saliency).max(axis=-1)
    for labels, what in ((predicted, "predicted"), (y_true, "y_true")):
        if labels is not None and class_names:
            _check_class_names(class_names, np.asarray(labels)[:n], what)
    fig = Figure(figsize=(2.0 * len(x), 4.6))
    for k in range(len(x)):
        top, bottom = fig.add_subplot(2, len(x), k + 1), fig.add_subplot(2, len(x), len(x) + k + 1)
        top.imshow(_image(x[k]), cmap="gray_r")
        if predicted is not None:
            guess = class_names[predicted[k]] if class_names else str(predicted[k])
            wrong = y_true is not None and predicted[k] != y_true[k]
            truth = f"\n(true: {class_names[y_true[k]]})" if wrong and class_names else ""
            top.set_title(f"{guess}{truth}", fontsize=8, color="red" if wrong else "black")
        bottom.imshow(saliency[k], cmap="hot")
        top.axis("off")
        bottom.axis("off")
    fig.suptitle("images (top) and saliency, max |d class score / d pixel| (bottom)",
                 fontsize=10)
    return _finish(fig, path)


def plot_model(model, path=None) -> Figure:
    """The model as a diagram, as keras.utils.plot_model draws it: a box per layer call
    with its name, class, output shape and parameter count, in the order the graph runs,
    an arrow from each tensor to the layers that read it (a skip connection's arcs round
    the right side to its merge); layers that run as one fused stage (``fusion.plan``)
    share a dashed frame."""
    plan = model.plan(for_loss=False)
    shapes = dict(zip(map(id, model.layers), model.layer_shapes()))
    rows = sum(len(layers_of(stage)) for stage in plan.stages) + 1
    fig = Figure(figsize=(6.2, 0.9 * rows + 0.3))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 12)
    ax.set_ylim(-rows + 0.1, 0.2)
    ax.axis("off")

    def box(top, title, detail):
        ax.add_patch(Rectangle((1.5, top - 0.8), 7, 0.7, facecolor="#dde8f4",
                               edgecolor="#35618f"))
        ax.text(5, top - 0.33, title, ha="center", va="bottom", fontsize=8, weight="bold")
        ax.text(5, top - 0.38, detail, ha="center", va="top", fontsize=7)

    box(0.0, "input (Input)", "(None, " + ", ".join(map(str, model.input_shape)) + ")")
    bottom = {0: -0.8}  # tensor number -> the bottom edge of the box that makes it
    top, arcs = -1.0, 0
    for k, (stage, inputs) in enumerate(zip(plan.stages, plan.inputs)):
        first = top
        for i in inputs if isinstance(inputs, tuple) else (inputs,):  # what it reads
            if bottom[i] == top + 0.2:  # the box right above: a straight arrow
                ax.annotate("", (5, top - 0.1), (5, bottom[i]),
                            arrowprops={"arrowstyle": "->", "color": "#35618f"})
            else:  # from further up: an arc round the right side, each a little wider
                arm = 20 + 14 * (arcs % 4)
                arcs += 1
                ax.annotate("", (8.5, top - 0.45), (8.5, bottom[i] + 0.35),
                            arrowprops={"arrowstyle": "->", "color": "#35618f",
                                        "connectionstyle": f"arc,angleA=0,angleB=0,armA={arm},"
                                                           f"armB={arm},rad=8"})
        for j, layer in enumerate(layers_of(stage)):
            in_shape, out_shape = shapes[id(layer)]
            if j:
                ax.annotate("", (5, top - 0.1), (5, top + 0.2),
                            arrowprops={"arrowstyle": "->", "color": "#35618f"})
            box(top, f"{layer.name} ({type(layer).__name__})",
                "(None, " + ", ".join(map(str, out_shape)) + ")"
                f"   params {layer.count_params(in_shape):,}")
            top -= 1
        bottom[k + 1] = top + 0.2
        if not isinstance(stage, (Layer, SharedUse)):
            ax.add_patch(Rectangle((1.2, top + 0.1), 7.6, first - top - 0.1, fill=False,
                                   linestyle="--", edgecolor="#c0504d"))
            ax.text(1.0, (first + top) / 2, "one fused stage", rotation=90, va="center",
                    ha="right", fontsize=7, color="#c0504d")
    if path is not None:  # a full-figure axes: no tight_layout to do
        fig.savefig(path, dpi=100)
    return fig


def plot_layer_stats(stats, path=None) -> Figure:
    """``callbacks.LayerStats`` over training, a column per layer: the activations'
    histogram over the steps as an image (fast.ai's "colourful dimension": log counts,
    darker is fewer), then their mean, standard deviation and fraction of zeros, and the
    standard deviation of the weights' gradients."""
    records = getattr(stats, "records", stats)
    layers = list(dict.fromkeys(r["layer"] for r in records if r["kind"] == "activation"))
    if not layers:
        raise ValueError("no activation statistics recorded; was LayerStats given to fit?")
    low, high = getattr(stats, "value_range", (-3.0, 3.0))
    fig = Figure(figsize=(2.6 * len(layers), 5.6))
    for k, name in enumerate(layers):
        acts = [r for r in records if r["layer"] == name and r["kind"] == "activation"]
        grads = [r for r in records  # a fused stage's weights are its layers'
                 if r["layer"] in name.split("+") and r["kind"] == "gradient"]
        steps = [r["step"] for r in acts]
        image = np.log1p(np.array([r["histogram"] for r in acts], dtype=float).T)
        top = fig.add_subplot(2, len(layers), k + 1)
        top.imshow(image, aspect="auto", origin="lower", cmap="viridis",
                   extent=(steps[0], steps[-1] + 1, low, high))
        top.set_title(name, fontsize=9)
        top.set_xlabel("step", fontsize=8)
        if k == 0:
            top.set_ylabel("activation value", fontsize=8)
        bottom = fig.add_subplot(2, len(layers), len(layers) + k + 1)
        bottom.plot(steps, [r["mean"] for r in acts], label="mean")
        bottom.plot(steps, [r["std"] for r in acts], label="std")
        bottom.plot(steps, [r["zeros"] for r in acts], label="fraction of zeros")
        if grads:
            bottom.plot([r["step"] for r in grads], [r["std"] for r in grads], ":",
                        label="gradient std")
        bottom.set_xlabel("step", fontsize=8)
        bottom.tick_params(labelsize=7)
        if grads or k == 0:
            handles, labels = bottom.get_legend_handles_labels()
    fig.suptitle("activations per layer over training (top: histogram; bottom: statistics)",
                 fontsize=10)
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8)
    return _finish(fig, path, rect=(0, 0.06, 1, 1))


def plot_profile(rows: list[dict], path=None, title: str = "Where a training step's time goes"
                 ) -> Figure:
    """``inspect.profile``'s rows as horizontal bars: forward and backward time per stage,
    then the loss, the optimizer and the rest of the step."""
    names = [r["layer"] for r in rows][::-1]
    forward = np.array([1e3 * r["forward_s"] for r in rows][::-1])
    backward = np.array([1e3 * r["backward_s"] for r in rows][::-1])
    fig = Figure(figsize=(7.5, 0.42 * len(rows) + 1.4))
    ax = fig.add_subplot()
    ax.barh(names, forward, label="forward (loss, optimizer, rest: their time)")
    ax.barh(names, backward, left=forward, label="backward")
    for k, (f, b) in enumerate(zip(forward, backward)):
        share = rows[len(rows) - 1 - k]["share"]
        ax.text(f + b, k, f" {share:.0%}", va="center", fontsize=8)
    ax.set_xlabel(f"milliseconds per step (median; one step {1e3 * rows[0]['step_s']:.2f} ms)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return _finish(fig, path)


def plot_embedding(points, labels, class_names=CLASS_NAMES, method: str | None = "tsne",
                   seed: int = 0, path=None) -> Figure:
    """A map of points (N, D), one dot per sample coloured by its class: mapped to 2-D by
    ``inspect.project`` (``method`` "tsne" or "pca"; None: ``points`` are 2-D already).
    ``points`` may be a dict {title: (N, D) array} of maps of the same samples, drawn side
    by side -- the raw pixels beside a trained network's ``inspect.embedding``."""
    from .inspect import project

    maps = points if isinstance(points, dict) else {"": points}
    labels = np.asarray(labels).ravel()
    _check_class_names(class_names, labels, "labels")
    for title, values in maps.items():
        shape = np.shape(values)
        if len(shape) != 2 or shape[0] != len(labels):
            raise ValueError(f"points{f' {title!r}' if title else ''} must be (N, D) with one "
                             f"row per label ({len(labels)}), got shape {shape}")
        if method is None and shape[1] != 2:
            raise ValueError(f"points of {shape[1]} dimensions need a method ('tsne' or "
                             "'pca') to map them to 2-D")
    flat = {title: np.asarray(v, dtype=np.float64) if method is None else
            project(v, method, seed) for title, v in maps.items()}
    classes = np.unique(labels).astype(int)
    colours = [f"C{k}" for k in range(10)] if len(class_names) <= 10 else None
    fig = Figure(figsize=(5.2 * len(flat), 5.4))
    for k, (title, xy) in enumerate(flat.items()):
        ax = fig.add_subplot(1, len(flat), k + 1)
        for c in classes:
            at = labels == c
            ax.scatter(xy[at, 0], xy[at, 1], s=4, alpha=0.7, label=class_names[c],
                       color=None if colours is None else colours[c])
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{title} ({method})" if title and method else title, fontsize=10)
    handles, names = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(5, len(names)), fontsize=8,
               markerscale=3)
    return _finish(fig, path, rect=(0, 0.1, 1, 1))
