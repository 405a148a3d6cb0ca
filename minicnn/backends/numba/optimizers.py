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
    element whose new values are not all finite keeps its old ones (the reference's
    keep_finite), a select, not a branch, so the loop stays vectorised; returns how many
    kept theirs."""
    kept = 0
    for i in prange(p.size):
        old_p, old_m, old_v = p[i], m[i], v[i]
        mi = _flushed(old_m + rate_m * (g[i] - old_m), tiny)
        vi = _flushed(old_v + rate_v * (g[i] * g[i] - old_v), tiny)
        pi = old_p - lr_t * mi / (math.sqrt(vi) + epsilon)
        ok = _finite(mi, vi, pi)
        m[i], v[i], p[i] = (mi, vi, pi) if ok else (old_m, old_v, old_p)
        kept += 0 if ok else 1
    return kept


@njit(parallel=True, **JIT)
def _sgd(p, g, velocity, lr, momentum, tiny):
    """velocity is p itself (and unused) when momentum = 0; keep_finite as in _adam."""
    kept = 0
    for i in prange(p.size):
        old_p, old_velocity = p[i], velocity[i]
        vi = _flushed(momentum * old_velocity - lr * g[i], tiny)
        pi = old_p + vi if momentum != 0 else old_p - lr * g[i]
        ok = _finite(vi, pi, pi)
        if momentum != 0:
            velocity[i] = vi if ok else old_velocity
        p[i] = pi if ok else old_p
        kept += 0 if ok else 1
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
