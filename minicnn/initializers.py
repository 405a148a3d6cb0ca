"""Weight initialisers with Keras' names and formulas.

fan_in and fan_out come from the shape as Keras computes them: a Dense kernel (D, U) has
fan_in D and fan_out U; a conv kernel (kh, kw, C, F) has fan_in kh*kw*C, fan_out kh*kw*F.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from . import config

Initializer = Callable[[tuple[int, ...], np.random.Generator], np.ndarray]


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of this shape."""
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def _uniform(scale: float, fan: str) -> Initializer:
    """U(-l, l) with l = sqrt(3 scale / n): variance scale / n for n = fan_in, or the mean."""
    def init(shape, rng):
        fan_in, fan_out = fans(shape)
        n = {"in": fan_in, "avg": (fan_in + fan_out) / 2}[fan]
        limit = math.sqrt(3.0 * scale / n)
        return rng.uniform(-limit, limit, size=shape).astype(config.dtype())
    return init


def _normal(scale: float, fan: str) -> Initializer:
    """Truncated normal (at 2 std, like Keras) with variance scale / n."""
    def init(shape, rng):
        fan_in, fan_out = fans(shape)
        n = {"in": fan_in, "avg": (fan_in + fan_out) / 2}[fan]
        std = math.sqrt(scale / n) / 0.87962566103423978  # std of N(0,1) truncated at +-2
        values = rng.standard_normal(shape)
        while (outside := np.abs(values) > 2).any():  # redraw the tails
            values[outside] = rng.standard_normal(int(outside.sum()))
        return (values * std).astype(config.dtype())
    return init


def _constant(value: float) -> Initializer:
    return lambda shape, rng: np.full(shape, value, dtype=config.dtype())


INITIALIZERS: dict[str, Initializer] = {
    "glorot_uniform": _uniform(1.0, "avg"),
    "glorot_normal": _normal(1.0, "avg"),
    "he_uniform": _uniform(2.0, "in"),
    "he_normal": _normal(2.0, "in"),
    "zeros": _constant(0.0),
    "ones": _constant(1.0),
}


def get(name: str) -> Initializer:
    """An initialiser by its Keras name (``"glorot_uniform"``, ``"he_normal"``, ...)."""
    if name not in INITIALIZERS:
        raise ValueError(f"unknown initializer {name!r}; expected one of {sorted(INITIALIZERS)}")
    return INITIALIZERS[name]
