"""Activation functions a = f(z) and their backward dz = da f'(z).

Each entry of ``ACTIVATIONS`` is (f, backward); the backward takes the input z, the output
a and the incoming gradient da, and uses whichever of z and a gives the shortest exact
formula (ReLU's and sigmoid's need only a). Softmax works over the last axis, so its
backward is the Jacobian-vector product a (da - <da, a>).
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

LEAKY_SLOPE = 0.2  # Keras' activations.leaky_relu default negative_slope
_SQRT_HALF = np.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


def stable_sigmoid(z):
    """1 / (1 + e^-z), computed from e^-|z| so it never overflows."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


def softmax(z):
    """e^z / sum e^z over the last axis, shifted by the row's max so e^z never overflows."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _gelu_cdf(z):
    """Phi(z), the standard normal CDF, as exact GELU uses (Keras' approximate=False)."""
    return 0.5 * (1.0 + erf(z * _SQRT_HALF))


ACTIVATIONS = {
    "linear": (lambda z: z, lambda z, a, da: da),
    "relu": (lambda z: np.maximum(z, 0), lambda z, a, da: da * (a > 0)),
    "sigmoid": (stable_sigmoid, lambda z, a, da: da * a * (1 - a)),
    "softmax": (softmax, lambda z, a, da: a * (da - (da * a).sum(axis=-1, keepdims=True))),
    "tanh": (np.tanh, lambda z, a, da: da * (1 - a * a)),
    "elu": (lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
            lambda z, a, da: da * np.where(z > 0, 1, a + 1)),
    "leaky_relu": (lambda z: np.where(z > 0, z, LEAKY_SLOPE * z),
                   lambda z, a, da: da * np.where(z > 0, 1, LEAKY_SLOPE)),
    "silu": (lambda z: z * stable_sigmoid(z),
             lambda z, a, da: da * (s := stable_sigmoid(z)) * (1 + z * (1 - s))),
    "gelu": (lambda z: z * _gelu_cdf(z),
             lambda z, a, da: da * (_gelu_cdf(z) + z * _INV_SQRT_2PI * np.exp(-0.5 * z * z))),
}


def _activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def activation_forward(name: str, z):
    """a = f(z) for f in ACTIVATIONS (softmax over the last axis), in z's dtype."""
    return np.asarray(_activation(name)[0](z), dtype=z.dtype)


def activation_backward(name: str, z, a, da):
    """dz = da f'(z), from the pre-activation z and the output a = f(z)."""
    return np.asarray(_activation(name)[1](z, a, da), dtype=da.dtype)
