"""Adam and SGD with momentum, element by element in parallel (the reference
optimizers.py; state below the smallest normal float is flushed to zero).

The reference's keep_finite (an element whose new values are not all finite keeps its
old ones) is done a block at a time: save the block's old values, update it in place, check
it, and put the old values back only in the rare block that has a value not finite. The
update loop then has no select, branch or count per element and vectorises; so does the
check (``_any_not_finite``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .chunks import chunk_rows
from .jit import JIT

# Division by zero gives inf or NaN, as in NumPy, instead of a check that raises: the
# update loops need no branch (keep_finite handles what the division makes).
UPDATE_JIT = dict(JIT, error_model="numpy")


@njit(**JIT)
def _flushed(x, tiny):
    """x, or 0 where |x| is below the smallest normal float ``tiny`` (the reference's
    flush_to_zero; x - x keeps x's dtype, and NaN)."""
    return x - x if abs(x) < tiny else x


@njit(**JIT)
def _finite(a, b, c):
    """Whether a, b and c are all finite: x - x is 0 for a finite x, NaN otherwise."""
    return (a - a) + (b - b) + (c - c) == 0


# The check's one license: its sum may be added in any order (fastmath's "reassoc", which lets
# the loop vectorise). Every term is 0 or NaN, so every order gives the same answer.
@njit(**dict(JIT, fastmath={"reassoc"}))
def _any_not_finite(a, b, c):
    """Whether any element of a, b or c is not finite (NaN or inf)."""
    total = a.dtype.type(0)
    for i in range(a.size):
        total += (a[i] - a[i]) + (b[i] - b[i]) + (c[i] - c[i])
    return total != 0


@njit(**UPDATE_JIT)
def _adam_block(p, g, m, v, lr_t, rate_m, rate_v, epsilon, tiny):
    """Adam on one block, in place."""
    for i in range(p.size):
        m[i] = mi = _flushed(m[i] + rate_m * (g[i] - m[i]), tiny)
        v[i] = vi = _flushed(v[i] + rate_v * (g[i] * g[i] - v[i]), tiny)
        p[i] = p[i] - lr_t * mi / (math.sqrt(vi) + epsilon)


@njit(**UPDATE_JIT)
def _sgd_block(p, g, velocity, lr, momentum, tiny):
    """SGD on one block, in place (velocity is p itself, and unused, when momentum = 0)."""
    if momentum == 0:
        for i in range(p.size):
            p[i] = p[i] - lr * g[i]
        return
    for i in range(p.size):
        velocity[i] = vi = _flushed(momentum * velocity[i] - lr * g[i], tiny)
        p[i] = p[i] + vi


@njit(**JIT)
def _save(old, a, b, c):
    """old[:, :n] = a, b, c (one block's values before its update)."""
    for i in range(a.size):
        old[0, i], old[1, i], old[2, i] = a[i], b[i], c[i]


@njit(**JIT)
def _restore(old, a, b, c):
    """Put ``_save``'s values back wherever a, b or c is not finite; -> how many."""
    kept = 0
    for i in range(a.size):
        if not _finite(a[i], b[i], c[i]):
            a[i], b[i], c[i] = old[0, i], old[1, i], old[2, i]
            kept += 1
    return kept


@njit(parallel=True, **JIT)
def _update(adam, p, g, a, b, scalars, tiny, saved):
    """Adam (``adam``: a, b = m, v; scalars = lr_t, 1 - beta_1, 1 - beta_2, epsilon) or SGD
    (a = b = the velocity; scalars = lr, momentum, unused, unused), in the arrays' dtype,
    a block at a time in each of saved.shape[0] chunks, with keep_finite (the module
    docstring; ``saved``: (chunks, 3, block)); returns how many elements kept their old
    values."""
    chunks, block = saved.shape[0], saved.shape[2]
    kept = np.zeros(chunks, np.int64)
    for chunk in prange(chunks):
        start, stop = chunk_rows(chunk, chunks, p.size)
        for lo in range(start, stop, block):
            hi = min(lo + block, stop)
            _save(saved[chunk], p[lo:hi], a[lo:hi], b[lo:hi])
            if adam:
                _adam_block(p[lo:hi], g[lo:hi], a[lo:hi], b[lo:hi], *scalars, tiny)
            else:
                _sgd_block(p[lo:hi], g[lo:hi], a[lo:hi], scalars[0], scalars[1], tiny)
            if _any_not_finite(p[lo:hi], a[lo:hi], b[lo:hi]):
                kept[chunk] += _restore(saved[chunk], p[lo:hi], a[lo:hi], b[lo:hi])
    return kept.sum()


def adam(p, g, m, v, lr_t, beta_1, beta_2, epsilon, saved) -> int:
    """Adam's update of flat p, m and v (the reference's adam_update) in saved.shape[0]
    runs of elements, with its scalars in the arrays' dtype so float32 runs in float32, as
    NumPy's does. -> elements kept."""
    real = p.dtype.type
    scalars = (real(lr_t), real(1 - beta_1), real(1 - beta_2), real(epsilon))
    return _update(True, p, g, m, v, scalars, np.finfo(p.dtype).tiny, saved)


def sgd(p, g, velocity, lr, momentum, saved) -> int:
    """SGD on flat arrays (the reference's sgd_update without Nesterov; velocity None when
    momentum = 0) as ``adam``, with its scalars in the arrays' dtype. -> elements kept."""
    real = p.dtype.type
    velocity = p if velocity is None else velocity
    scalars = (real(lr), real(momentum), real(0), real(0))
    return _update(False, p, g, velocity, velocity, scalars, np.finfo(p.dtype).tiny, saved)
