"""Numerical gradient checking by central differences.

Use it on any layer, your own included, on any backend:

    >>> errors = check_layer(Conv2D(4, 3, padding="same"), np.random.randn(2, 7, 7, 3))
    >>> errors
    GradientErrors(float64, {'input': 3.1e-10, 'kernel': 2.2e-10, 'bias': 1.9e-11})
    >>> max(errors.values()) < 1e-6
    True

The analytic gradient of L = sum(layer(x) * dy) (random dy) is compared with
(L(p + eps) - L(p - eps)) / (2 eps) for every entry p of the input and every parameter.
Checks always run in float64, whatever ``minicnn.floatx()`` is (in float32 the differences'
rounding alone makes correct gradients look wrong); the setting is restored afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np

from . import config
from .backends import get_backend, in_session, to_numpy

PRECISION = "float64"  # the dtype every check computes in


class GradientErrors(dict):
    """``{"input": e, "kernel": e, ...}``: relative errors, computed in ``precision``."""

    precision = PRECISION

    def __repr__(self) -> str:
        errors = ", ".join(f"{k!r}: {v:.2g}" for k, v in self.items())
        return f"GradientErrors({self.precision}, {{{errors}}})"


@contextlib.contextmanager
def _in_float64() -> Iterator[None]:
    """floatx is float64 inside, and what it was after."""
    before = config.floatx()
    config.set_floatx(PRECISION)
    try:
        yield
    finally:
        config.set_floatx(before)


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """||a - n|| / (||a|| + ||n||): 0 when equal, about 1e-7 or less for a correct float64 grad."""
    a, n = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    denominator = np.linalg.norm(a) + np.linalg.norm(n)
    return float(np.linalg.norm(a - n) / denominator) if denominator > 0 else 0.0


def numerical_gradient(f: Callable[[np.ndarray], float], x: np.ndarray,
                       eps: float = 1e-6) -> np.ndarray:
    """d f / d x by central differences; ``x`` is perturbed in place and restored."""
    grad = np.zeros_like(x, dtype=np.float64)
    flat, g = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = f(x)
        flat[i] = old - eps
        minus = f(x)
        flat[i] = old
        g[i] = (plus - minus) / (2 * eps)
    return grad


@in_session
def check_layer(layer, x: np.ndarray, seed: int = 0, eps: float = 1e-6) -> GradientErrors:
    """Relative errors of a layer's input and parameter gradients on the active backend,
    in float64. Builds the layer for ``x.shape[1:]`` if needed; its weights are back in the
    current floatx afterwards. Returns ``{"input": e, "kernel": e, ...}``.
    """
    backend = get_backend()
    try:
        with _in_float64():
            return _check_layer(backend, layer, x, seed, eps)
    finally:
        if layer.built:
            layer.place(backend)  # in the restored floatx


def _check_layer(backend, layer, x, seed: int, eps: float) -> GradientErrors:
    x = np.array(x, dtype=np.float64)
    rng = np.random.default_rng(seed)
    if not layer.built:
        layer.build(x.shape[1:], rng)
    layer.place(backend)
    dy = rng.standard_normal((len(x), *layer.compute_output_shape(x.shape[1:])))

    def loss_of_input(x_host):
        out = backend.to_host(layer.forward(backend.to_device(x_host), True))
        return float((out * dy).sum()) + penalty()

    def penalty() -> float:  # a kernel_regularizer's term is part of the loss
        return layer.penalty() if hasattr(layer, "penalty") else 0.0

    layer.forward(backend.to_device(x), training=True)
    analytic_dx = backend.to_host(layer.backward(backend.to_device(dy)))
    analytic = {k: backend.to_host(g) for k, g in layer.grads.items()}
    errors = GradientErrors(
        input=relative_error(analytic_dx, numerical_gradient(loss_of_input, x, eps)))
    for key in list(layer.params):
        host = to_numpy(layer.params[key]).copy()

        def loss_of_param(p, key=key):
            layer.params[key] = backend.to_device(p)
            return loss_of_input(x)

        numeric = numerical_gradient(loss_of_param, host, eps)
        layer.params[key] = backend.to_device(host)
        errors[key] = relative_error(analytic[key], numeric)
    return errors


@in_session
def check_model(model, x: np.ndarray, y: np.ndarray, eps: float = 1e-6) -> float:
    """Largest relative error over all parameters of a compiled model's loss gradient, in
    float64 (the model's weights return to the current floatx when it next runs).

    Uses the public ``compute_gradients`` (analytic) and ``compute_loss`` (numeric). In
    training mode, so a model with Dropout needs rate 0 here (its masks are random) and
    BatchNorm uses batch statistics (its moving ones drift, harmlessly).
    """
    with _in_float64():
        return _check_model(get_backend(), model, x, y, eps)


def _check_model(backend, model, x, y, eps: float) -> float:
    xs, ys = model.check_data(x, y)
    model.ready(seed=0)
    xd, yd = backend.to_device(xs), backend.to_device(ys)
    model.compute_gradients(xd, yd)
    worst = 0.0
    for layer in model.layers:
        analytic = {k: backend.to_host(g) for k, g in layer.grads.items()}
        for key in list(layer.params):
            host = to_numpy(layer.params[key]).copy()

            def loss_of_param(p, layer=layer, key=key):
                layer.params[key] = backend.to_device(p)
                return model.compute_loss(xd, yd, training=True)

            numeric = numerical_gradient(loss_of_param, host, eps)
            layer.params[key] = backend.to_device(host)
            worst = max(worst, relative_error(analytic[key], numeric))
    return worst
