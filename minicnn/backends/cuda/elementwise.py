"""Activations element by element, softmax per row, Dropout."""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, uint64

from ..reference import activations as ref_activations
from ..reference.elementwise import GOLDEN, MIX_1, MIX_2, SHIFTS, dropout_threshold
from .launch import as_rows, flat_view, jit_kernel, run_kernel
from .memory import empty_like, host_fallback


@jit_kernel("void({t}[::1], {t}[::1], int64)")
def _activation(z, a, kind):
    """kind 0: relu, 1: sigmoid (computed from e^-|z|, never overflowing)."""
    idx = cuda.grid(1)
    if idx >= z.size:
        return
    v = z[idx]
    if kind == 0:
        a[idx] = v if v > 0 else 0
    elif v >= 0:
        a[idx] = 1 / (1 + math.exp(-v))
    else:
        e = math.exp(v)
        a[idx] = e / (1 + e)


@jit_kernel("void({t}[::1], {t}[::1], {t}[::1], int64)")
def _activation_backward(a, da, dz, kind):
    idx = cuda.grid(1)
    if idx >= a.size:
        return
    if kind == 0:
        dz[idx] = da[idx] if a[idx] > 0 else 0
    else:
        dz[idx] = da[idx] * a[idx] * (1 - a[idx])


@jit_kernel("void({t}[:, ::1], {t}[:, ::1])")
def _softmax_rows(z, a):
    r = cuda.grid(1)
    if r >= z.shape[0]:
        return
    top = z[r, 0]
    for k in range(1, z.shape[1]):
        top = max(top, z[r, k])
    total = z[r, 0] * 0
    for k in range(z.shape[1]):
        a[r, k] = math.exp(z[r, k] - top)
        total += a[r, k]
    for k in range(z.shape[1]):
        a[r, k] /= total


_KINDS = {"relu": 0, "sigmoid": 1}


def activation_forward(name, z):
    if name == "linear":
        return z
    if name not in _KINDS and name != "softmax":  # tanh, elu, ...: the reference, on the host
        return host_fallback(ref_activations.activation_forward)(name, z)
    a = empty_like(z)
    if name == "softmax":
        k = z.shape[len(z.shape) - 1]  # (simulated device arrays reject shape[-1])
        rows = as_rows(z, k)
        run_kernel(_softmax_rows, rows.shape[0], rows, as_rows(a, k))
    else:
        run_kernel(_activation, z.size, flat_view(z), flat_view(a), _KINDS[name])
    return a


def activation_backward(name, z, a, da):
    if name not in _KINDS:
        return host_fallback(ref_activations.activation_backward)(name, z, a, da)
    dz = empty_like(a)
    run_kernel(_activation_backward, a.size, flat_view(a), flat_view(da), flat_view(dz),
               _KINDS[name])
    return dz





@jit_kernel("void({t}[::1], uint64, {t}, uint64, {t}[::1])")
def _dropout(x, threshold, scale, key, out):
    """One thread per element: out = x * scale where its draw (the reference's integer
    steps, reference.elementwise.dropout_draws) is >= threshold, else 0."""
    i = cuda.grid(1)
    if i >= x.size:
        return
    z = uint64(i) * GOLDEN + key
    z = (z ^ (z >> SHIFTS[0])) * MIX_1
    z = (z ^ (z >> SHIFTS[1])) * MIX_2
    out[i] = x[i] * scale if ((z ^ (z >> SHIFTS[2])) >> SHIFTS[3]) >= threshold else 0


def dropout(x, rate, key):
    out = empty_like(x)
    run_kernel(_dropout, x.size, flat_view(x), dropout_threshold(rate), np.dtype(x.dtype).type(
        1 / (1 - rate)), np.uint64(key), flat_view(out))
    return out
