"""Adam and SGD with momentum, element by element in parallel (the reference
optimizers.py; state below the smallest normal float is flushed to zero)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .jit import JIT


@njit(**JIT)
def _flushed(x, tiny):
    """x, or 0 where |x| is below the smallest normal float ``tiny`` (the reference's
    flush_to_zero; x - x keeps x's dtype, and NaN)."""
    return x - x if abs(x) < tiny else x


@njit(parallel=True, **JIT)
def _adam(p, g, m, v, lr_t, rate_m, rate_v, epsilon, tiny):
    """The scalars come in the arrays' dtype, so float32 runs in float32 (as NumPy's)."""
    for i in prange(p.size):
        m[i] = _flushed(m[i] + rate_m * (g[i] - m[i]), tiny)
        v[i] = _flushed(v[i] + rate_v * (g[i] * g[i] - v[i]), tiny)
        p[i] -= lr_t * m[i] / (math.sqrt(v[i]) + epsilon)


@njit(parallel=True, **JIT)
def _sgd_momentum(p, g, velocity, lr, momentum, tiny):
    for i in prange(p.size):
        velocity[i] = _flushed(momentum * velocity[i] - lr * g[i], tiny)
        p[i] += velocity[i]




def adam(p, g, m, v, lr_t, beta_1, beta_2, epsilon):
    """Adam's update of flat p, m and v (the reference's adam_update), with its scalars in
    the arrays' dtype so float32 runs in float32, as NumPy's does."""
    real = p.dtype.type
    _adam(p, g, m, v, real(lr_t), real(1 - beta_1), real(1 - beta_2), real(epsilon),
          np.finfo(p.dtype).tiny)


def sgd_momentum(p, g, velocity, lr, momentum):
    """SGD with momentum on flat arrays (the reference's sgd_update without Nesterov)."""
    _sgd_momentum(p, g, velocity, lr, momentum, np.finfo(p.dtype).tiny)
