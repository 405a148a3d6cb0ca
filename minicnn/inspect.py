"""Looking inside a model: what every layer outputs, and which input pixels decide a class.

    >>> maps = minicnn.inspect.feature_maps(model, x_test[:4])   # {"conv2d": (4, 26, 26, 32), ...}
    >>> where = minicnn.inspect.saliency(model, x_test[:4])      # same shape as the images

``plotting.plot_feature_maps`` and ``plotting.plot_saliency`` draw them. Both work on every
backend (arrays come back to the host).
"""

from __future__ import annotations

import copy
import functools
import math
import time

import numpy as np

from . import config, fusion
from .backends import to_numpy
from .fusion import layers_of
from .layers import AveragePooling2D, Conv2D, Dense, MaxPool2D
from .validation import check_inputs, check_positive_int


def feature_maps(model, x) -> dict[str, np.ndarray]:
    """Every layer's output for the images ``x`` (N, H, W, C), keyed by layer name in the
    order the graph runs them (a layer called twice: "name", then "name[1]"), in inference
    mode. The layers run one at a time, unfused, as the textbook writes them (a Conv2D's
    map is after its activation)."""
    x = check_inputs(x, model.input_shape, config.dtype())
    backend = model.ready()
    plan = fusion.plan(model.nodes(), fuse=False, fuse_loss=False)
    with backend.session():
        values = plan.forward(backend.to_device(x), False)
    return {name: np.array(backend.to_host(out))
            for name, out in zip(_call_names(plan), values[1:])}


def _call_names(plan) -> list[str]:
    """The name of each stage of an unfused plan: its layer's, "name[k]" for a layer's
    call after its first."""
    names: list[str] = []
    for stage in plan.stages:
        name = layers_of(stage)[0].name
        calls = sum(1 for key in names if key == name or key.startswith(name + "["))
        names.append(name if calls == 0 else f"{name}[{calls}]")
    return names


def embedding(model, x, layer: str | None = None, batch_size: int = 256) -> np.ndarray:
    """What the network has made of each image at one layer: that layer's outputs for the
    images ``x`` (N, H, W, C), flattened, (N, D), in inference mode. ``layer``: a name as
    ``feature_maps`` keys them, or None for what the last layer reads (the penultimate
    representation, on which the classifier draws its lines). ``project`` maps the rows to
    2-D, ``plotting.plot_embedding`` draws them."""
    x = check_inputs(x, model.input_shape, config.dtype())
    batch_size = check_positive_int(batch_size, "batch_size")
    backend = model.ready()
    plan = fusion.plan(model.nodes(), fuse=False, fuse_loss=False)
    names = _call_names(plan)
    if layer is None:
        tensor = plan.inputs[-1]
        if isinstance(tensor, tuple):
            raise ValueError("the last layer merges several tensors; name the layer whose "
                             f"outputs to embed, one of {names}")
    elif layer in names:
        tensor = names.index(layer) + 1
    else:
        raise ValueError(f"no layer {layer!r} in this model; its layers are {names}")
    rows = []
    with backend.session():
        for start in range(0, len(x), batch_size):
            values = plan.forward(backend.to_device(x[start:start + batch_size]), False)
            out = np.asarray(backend.to_host(values[tensor]))
            rows.append(out.reshape(len(out), -1).astype(np.float64))
    return np.concatenate(rows)


def project(points, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """(N, D) points -> (N, 2), for a map of them. ``"pca"``: onto the two directions of
    largest variance (the centred points' top two right singular vectors; linear, exact,
    keeps large distances). ``"tsne"``: scikit-learn's t-SNE (van der Maaten and Hinton
    2008), which keeps each point's near neighbours near, so clusters show; on the points'
    first 50 principal components when D is larger, as scikit-learn advises; ``seed``
    fixes its layout."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or len(points) < 3:
        raise ValueError(f"points must be (N, D) with N >= 3 rows, got shape {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("points contain NaN or inf")
    if method == "pca":
        return _principal_components(points, 2)
    if method != "tsne":
        raise ValueError(f"method must be 'tsne' or 'pca', got {method!r}")
    from sklearn.manifold import TSNE

    reduced = _principal_components(points, 50) if points.shape[1] > 50 else points
    perplexity = min(30.0, (len(points) - 1) / 3)  # t-SNE needs fewer neighbours than points
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(reduced)


def _principal_components(points: np.ndarray, k: int) -> np.ndarray:
    """The centred points' coordinates along their top k principal directions (N, k)."""
    centred = points - points.mean(axis=0)
    _, _, directions = np.linalg.svd(centred, full_matrices=False)
    out = centred @ directions[:k].T
    return np.pad(out, ((0, 0), (0, k - out.shape[1])))  # fewer than k dimensions: zeros


def saliency(model, x, class_index=None) -> np.ndarray:
    """d score_c / d x: the gradient of class c's score (before the softmax) with respect to
    every input pixel, same shape as ``x`` (Simonyan et al. 2014, as in CS231n). ``c`` is
    ``class_index`` (an int, or one per image), or each image's predicted class when None.
    Its magnitude shows which pixels would change the score most."""
    x = check_inputs(x, model.input_shape, config.dtype())
    classes = model.output_shape[0]
    if class_index is None:
        class_index = model.predict(x).argmax(axis=1)
    index = np.broadcast_to(np.asarray(class_index), (len(x),))
    if not (np.issubdtype(index.dtype, np.integer) and ((0 <= index) & (index < classes)).all()):
        raise ValueError(f"class_index must be a class in [0, {classes}) (or one per image), "
                         f"got {class_index!r}")
    return model.input_gradient(x, np.eye(classes)[index], before_activation=True)


# ----------------------------------------------------------------------------- profile


def layer_flops(layer, input_shape, output_shape, batch: int) -> int:
    """Floating-point operations of one forward and backward of ``layer`` for ``batch``
    samples, 2 per multiply-add: a Dense or Conv2D multiplies three times (y, dx, dW) its
    forward's batch x inputs x outputs products; pooling compares (max) or adds (average)
    each window element once forward and sends each output once backward; element-wise
    layers and activations count 1 per value each way."""
    out = batch * math.prod(output_shape)
    if layer.merges:  # one addition (or copy) per output value each way
        return 2 * out
    if isinstance(layer, Dense):
        return 3 * 2 * batch * input_shape[0] * layer.units
    if isinstance(layer, Conv2D):
        taps = layer.kernel_size[0] * layer.kernel_size[1] * input_shape[-1]
        return 3 * 2 * out * taps
    if isinstance(layer, (MaxPool2D, AveragePooling2D)):
        return out * layer.pool_size[0] * layer.pool_size[1] + out
    return 2 * out if layer.activation != "linear" or layer.params else 0


def _bytes(layer, input_shape, output_shape, batch: int, itemsize: int) -> int:
    weights = sum(math.prod(spec.shape) for spec in layer.weight_specs(input_shape).values())
    inputs = sum(map(math.prod, input_shape)) if layer.merges else math.prod(input_shape)
    return itemsize * (batch * (inputs + math.prod(output_shape)) + weights)


class _TimedStage:
    """A stage of the model's plan whose forward and backward ``clock`` times."""

    def __init__(self, stage, index: int, clock):
        self.stage, self.index, self.clock = stage, index, clock
        self.layers = layers_of(stage)

    def forward(self, x, training: bool):
        return self.clock((self.index, "forward"), self.stage.forward, x, training)

    def backward(self, dy):
        return self.clock((self.index, "backward"), self.stage.backward, dy)


def profile(model, x, y, steps: int = 10) -> list[dict]:
    """Where a training step's time goes: the real step (``fit``'s), timed around each stage
    of ``fusion.plan``, the loss and the optimizer, over ``steps`` steps after a warm-up
    one (which may compile kernels); the weights and the optimizer's state are restored
    afterwards (and Dropout's generators), so profiling trains nothing. The model runs
its own step (``run_step``) on timed copies of its stages and a tally of the profile's own.

    One row per stage (``layer``: its layers' names, joined by "+") with ``forward_s`` and
    ``backward_s`` (medians per step), ``flops`` (``layer_flops``, forward and backward),
    ``bytes`` (its input, output and weights) and ``share`` of the step; then "loss" and
    "optimizer" (their time in ``forward_s``), and "outside the layers": the rest of the
    step (Python, the tally), so that the rows add up to the median step, ``step_s``, within
    the spread of the medians.
    """
    check_positive_int(steps, "steps")
    xs, ys = model.check_data(x, y)
    backend = model.ready()
    saved, iterations = model.get_weights(), model.optimizer.iterations
    saved_state = {key: np.array(to_numpy(value)) for key, value in
                   model.optimizer.state_arrays().items()}  # copies: the steps update them
    generators = [(layer, copy.deepcopy(layer.rng)) for layer in model.layers if layer.uses_rng]
    times: dict = {}  # (stage index or name, "forward"/"backward") -> seconds per step

    def clock(key, call, *args, **kwargs):
        backend.synchronize()
        start = time.perf_counter()
        result = call(*args, **kwargs)
        backend.synchronize()
        times.setdefault(key, []).append(time.perf_counter() - start)
        return result

    plan = model.plan()
    stages = plan.stages
    timed = plan._replace(stages=[_TimedStage(stage, i, clock)
                                  for i, stage in enumerate(stages)])
    step_times = []
    try:
        with backend.session(), backend.step_buffers(model, "profile", len(xs)):
            xd, yd = backend.to_device(xs), backend.to_device(ys)
            for step in range(steps + 1):
                if step == 1:
                    times.clear()  # the warm-up step may have compiled kernels
                tally = backend.tally(1, model.metrics)  # this profile's own: its calls timed
                tally.loss_gradient = functools.partial(clock, ("loss", "forward"),
                                                        tally.loss_gradient)
                tally.update = functools.partial(clock, ("optimizer", "forward"), tally.update)
                backend.synchronize()
                start = time.perf_counter()
                model.run_step(tally, xd, yd, plan=timed)
                tally.read()
                backend.synchronize()
                step_times.append(time.perf_counter() - start)
    finally:
        model.set_weights(saved)
        model.optimizer.load_state(iterations, saved_state)
        model.optimizer.place(backend)
        for layer, generator in generators:
            layer.rng = generator
    step_times = np.array(step_times[1:])

    def per_step(key):
        return np.array(times.get(key, [0.0] * steps))

    shapes = model.layer_shapes()
    rows, accounted = [], np.zeros(steps)
    for i, stage in enumerate(stages):
        forward, backward = per_step((i, "forward")), per_step((i, "backward"))
        accounted += forward + backward
        indices = [model.layers.index(layer) for layer in layers_of(stage)]
        rows.append({
            "layer": "+".join(layer.name for layer in layers_of(stage)),
            "forward_s": float(np.median(forward)), "backward_s": float(np.median(backward)),
            "flops": sum(layer_flops(model.layers[j], *shapes[j], len(xs)) for j in indices),
            "bytes": sum(_bytes(model.layers[j], *shapes[j], len(xs), xs.itemsize)
                         for j in indices)})
    loss = per_step(("loss", "forward"))
    update = per_step(("optimizer", "forward"))
    accounted += loss + update
    for name, seconds in (("loss", loss), ("optimizer", update),
                          ("outside the layers", step_times - accounted)):
        rows.append({"layer": name, "forward_s": float(np.median(seconds)), "backward_s": 0.0,
                     "flops": 0, "bytes": 0})
    step = float(np.median(step_times))
    for row in rows:
        row["step_s"] = step
        row["share"] = (row["forward_s"] + row["backward_s"]) / step
    return rows


def print_profile(rows: list[dict], print_fn=print) -> None:
    """``profile``'s rows as a table, with each row's GFLOP/s."""
    print_fn(f"{'layer':34s} {'forward ms':>11s} {'backward ms':>12s} {'GFLOP/s':>8s} "
             f"{'MB':>7s} {'share':>6s}")
    for r in rows:
        seconds = r["forward_s"] + r["backward_s"]
        rate = f"{r['flops'] / seconds / 1e9:8.1f}" if r["flops"] and seconds > 0 else " " * 8
        print_fn(f"{r['layer'][:34]:34s} {1e3 * r['forward_s']:11.3f} "
                 f"{1e3 * r['backward_s']:12.3f} {rate} {r['bytes'] / 1e6:7.2f} "
                 f"{r['share']:6.1%}")
    print_fn(f"{'one step':34s} {1e3 * rows[0]['step_s']:11.3f}")
