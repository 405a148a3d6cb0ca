"""Activations element by element, softmax per row."""

from __future__ import annotations

import math

from numba import cuda

from ..reference import activations as ref_activations
from .launch import _flat, _kernel, _launch, _rows
from .memory import empty_like, host_fallback


@_kernel("void({t}[::1], {t}[::1], int64)")
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


@_kernel("void({t}[::1], {t}[::1], {t}[::1], int64)")
def _activation_backward(a, da, dz, kind):
    idx = cuda.grid(1)
    if idx >= a.size:
        return
    if kind == 0:
        dz[idx] = da[idx] if a[idx] > 0 else 0
    else:
        dz[idx] = da[idx] * a[idx] * (1 - a[idx])


@_kernel("void({t}[:, ::1], {t}[:, ::1])")
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
        rows = _rows(z, k)
        _launch(_softmax_rows, rows.shape[0], rows, _rows(a, k))
    else:
        _launch(_activation, z.size, _flat(z), _flat(a), _KINDS[name])
    return a


def activation_backward(name, z, a, da):
    if name not in _KINDS:
        return host_fallback(ref_activations.activation_backward)(name, z, a, da)
    dz = empty_like(a)
    _launch(_activation_backward, a.size, _flat(a), _flat(da), _flat(dz), _KINDS[name])
    return dz



