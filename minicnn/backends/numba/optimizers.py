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


@njit(**JIT)
def _finite(a, b, c):
    return math.isfinite(a) and math.isfinite(b) and math.isfinite(c)


@njit(parallel=True, **JIT)
def _adam(p, g, m, v, lr_t, rate_m, rate_v, epsilon, tiny):
    """The scalars come in the arrays' dtype, so float32 runs in float32 (as NumPy's). An
    element whose new values are not all finite, as stored, gets its old ones back (the
    reference's keep_finite); returns how many did."""
    kept = 0
    for i in prange(p.size):
        old_p, old_m, old_v = p[i], m[i], v[i]
        m[i] = _flushed(old_m + rate_m * (g[i] - old_m), tiny)
        v[i] = _flushed(old_v + rate_v * (g[i] * g[i] - old_v), tiny)
        p[i] = old_p - lr_t * m[i] / (math.sqrt(v[i]) + epsilon)
        if not _finite(m[i], v[i], p[i]):
            p[i], m[i], v[i] = old_p, old_m, old_v
            kept += 1
    return kept


@njit(parallel=True, **JIT)
def _sgd(p, g, velocity, lr, momentum, tiny):
    """velocity is p itself (and unused) when momentum = 0; keep_finite as in _adam."""
    kept = 0
    for i in prange(p.size):
        old_p, old_velocity = p[i], velocity[i]
        if momentum != 0:
            velocity[i] = _flushed(momentum * old_velocity - lr * g[i], tiny)
            p[i] = old_p + velocity[i]
        else:
            p[i] = old_p - lr * g[i]
        if not _finite(p[i], velocity[i], p[i]):
            p[i], velocity[i] = old_p, old_velocity
            kept += 1
    return kept


def adam(p, g, m, v, lr_t, beta_1, beta_2, epsilon) -> int:
    """Adam's update of flat p, m and v (the reference's adam_update), with its scalars in
    the arrays' dtype so float32 runs in float32, as NumPy's does. -> elements kept."""
    real = p.dtype.type
    return _adam(p, g, m, v, real(lr_t), real(1 - beta_1), real(1 - beta_2), real(epsilon),
                 np.finfo(p.dtype).tiny)


def sgd(p, g, velocity, lr, momentum) -> int:
    """SGD on flat arrays (the reference's sgd_update without Nesterov; velocity None when
    momentum = 0), with its scalars in the arrays' dtype. -> elements kept."""
    real = p.dtype.type
    return _sgd(p, g, p if velocity is None else velocity, real(lr), real(momentum),
                np.finfo(p.dtype).tiny)
