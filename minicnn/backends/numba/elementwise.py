"""Element-wise activations and their backward on flat arrays, softmax over rows, and
the element-wise product, Dropout."""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ..reference.activations import LEAKY_SLOPE
from ..reference.elementwise import GOLDEN, MIX_1, MIX_2, SHIFTS
from .jit import JIT

SQRT_HALF = math.sqrt(0.5)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# ----------------------------------------------------------------------------- activations
# Element-wise kernels see the array flattened (every array here is C-contiguous).


@njit(parallel=True, **JIT)
def _relu(z, a):
    for i in prange(z.size):
        a[i] = z[i] if z[i] > 0 else 0.0


@njit(parallel=True, **JIT)
def _relu_backward(z, a, da, dz):
    for i in prange(a.size):
        dz[i] = da[i] if a[i] > 0 else 0.0


@njit(**JIT)
def _stable_sigmoid(v):
    """1 / (1 + e^-v), computed from e^-|v| so it never overflows."""
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


@njit(parallel=True, **JIT)
def _sigmoid(z, a):
    for i in prange(z.size):
        a[i] = _stable_sigmoid(z[i])


@njit(parallel=True, **JIT)
def _sigmoid_backward(z, a, da, dz):
    for i in prange(a.size):
        dz[i] = da[i] * a[i] * (1.0 - a[i])


@njit(parallel=True, **JIT)
def _tanh(z, a):
    for i in prange(z.size):
        a[i] = math.tanh(z[i])


@njit(parallel=True, **JIT)
def _tanh_backward(z, a, da, dz):
    for i in prange(a.size):
        dz[i] = da[i] * (1.0 - a[i] * a[i])


@njit(parallel=True, **JIT)
def _elu(z, a):
    for i in prange(z.size):
        a[i] = z[i] if z[i] > 0 else math.expm1(z[i])


@njit(parallel=True, **JIT)
def _elu_backward(z, a, da, dz):
    for i in prange(a.size):
        dz[i] = da[i] if z[i] > 0 else da[i] * (a[i] + 1.0)


@njit(parallel=True, **JIT)
def _leaky_relu(z, a):
    for i in prange(z.size):
        a[i] = z[i] if z[i] > 0 else LEAKY_SLOPE * z[i]


@njit(parallel=True, **JIT)
def _leaky_relu_backward(z, a, da, dz):
    for i in prange(a.size):
        dz[i] = da[i] if z[i] > 0 else LEAKY_SLOPE * da[i]


@njit(parallel=True, **JIT)
def _silu(z, a):
    for i in prange(z.size):
        a[i] = z[i] * _stable_sigmoid(z[i])


@njit(parallel=True, **JIT)
def _silu_backward(z, a, da, dz):
    for i in prange(a.size):
        s = _stable_sigmoid(z[i])
        dz[i] = da[i] * s * (1.0 + z[i] * (1.0 - s))


@njit(parallel=True, **JIT)
def _gelu(z, a):
    for i in prange(z.size):
        a[i] = z[i] * 0.5 * (1.0 + math.erf(z[i] * SQRT_HALF))


@njit(parallel=True, **JIT)
def _gelu_backward(z, a, da, dz):
    for i in prange(a.size):
        cdf = 0.5 * (1.0 + math.erf(z[i] * SQRT_HALF))
        dz[i] = da[i] * (cdf + z[i] * INV_SQRT_2PI * math.exp(-0.5 * z[i] * z[i]))


# The element-wise activations, in the order of the ``kind`` index the compiled CPU
# backends share; softmax (rows) and linear (the identity) are the driver's business.
ELEMENTWISE = ("relu", "sigmoid", "tanh", "elu", "leaky_relu", "silu", "gelu")
_FORWARD = (_relu, _sigmoid, _tanh, _elu, _leaky_relu, _silu, _gelu)
_BACKWARD = (_relu_backward, _sigmoid_backward, _tanh_backward, _elu_backward,
             _leaky_relu_backward, _silu_backward, _gelu_backward)


def activation_forward(kind, z, a):
    """a = f(z) on flat arrays, f = ELEMENTWISE[kind] (one compiled loop per activation)."""
    _FORWARD[kind](z, a)


def activation_backward(kind, z, a, da, dz):
    """dz = da f'(z) on flat arrays, f = ELEMENTWISE[kind]."""
    _BACKWARD[kind](z, a, da, dz)


@njit(parallel=True, **JIT)
def softmax_rows(z, a):
    for r in prange(z.shape[0]):
        top = z[r, 0]
        for k in range(1, z.shape[1]):
            top = max(top, z[r, k])
        total = 0.0
        for k in range(z.shape[1]):
            a[r, k] = math.exp(z[r, k] - top)
            total += a[r, k]
        for k in range(z.shape[1]):
            a[r, k] /= total




@njit(parallel=True, **JIT)
def multiply(a, b, out):
    for i in prange(a.size):
        out[i] = a[i] * b[i]


@njit(parallel=True, **JIT)
def dropout(x, threshold, scale, key, out):
    """out = x * scale where element i's draw (reference.elementwise.dropout_draws, the same
    integer steps) is >= threshold, else 0."""
    for i in prange(x.size):
        z = np.uint64(i) * GOLDEN + key
        z = (z ^ (z >> SHIFTS[0])) * MIX_1
        z = (z ^ (z >> SHIFTS[1])) * MIX_2
        keep = ((z ^ (z >> SHIFTS[2])) >> SHIFTS[3]) >= threshold
        out[i] = x[i] * scale if keep else 0


