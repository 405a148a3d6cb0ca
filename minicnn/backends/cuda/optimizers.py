"""Adam over every parameter in one launch, SGD, and the gather of an epoch's shuffled rows."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
import math

import numpy as np
from numba import cuda

from ..reference import optimizers as ref_optimizers
from .launch import flat_view, jit_kernel, run_kernel
from .memory import host_fallback

# The step's flag ``halted`` ((1,) int32 on the device): 0, 1 when the loss kernel found a
# NaN or inf loss, KEPT when an update kept elements whose new values were not finite.
KEPT = 2


@cuda.jit(device=True)
def _flushed(x, tiny):
    """x, or 0 where |x| is below the smallest normal float (the reference's flush_to_zero)."""
    return x - x if abs(x) < tiny else x


@jit_kernel("void(UniTuple({t}[::1], {k}), UniTuple({t}[::1], {k}), UniTuple({t}[::1], {k}), "
        "UniTuple({t}[::1], {k}), UniTuple(int64, {k}), float64, float64, float64, float64, "
        "float64, int32[::1])")
def _adam(ps, gs, ms, vs, ends, lr_t, beta_1, beta_2, epsilon, tiny, halted):
    """Adam over several parameters in one launch: thread i updates element i of their
    concatenation; ``ends`` are the running totals of their sizes (flat arrays in tuples).
    Nothing changes while halted[0] is set (a NaN loss, flagged by the loss kernel, or an
    earlier update that was not finite). m and v are flushed to zero below the smallest
    normal float, as in the reference."""
    i = cuda.grid(1)
    # skip on a NaN loss (1) only: KEPT (2) is written by this very launch's threads, and
    # reading it here would stop the rest of this update half-way
    if i >= ends[len(ends) - 1] or halted[0] == 1:
        return
    k = 0
    while i >= ends[k]:
        k += 1
    j = i - (ends[k - 1] if k > 0 else 0)
    p, g, m, v = ps[k], gs[k], ms[k], vs[k]
    old_p, old_m, old_v = p[j], m[j], v[j]
    m[j] = _flushed(old_m + (1 - beta_1) * (g[j] - old_m), tiny)
    v[j] = _flushed(old_v + (1 - beta_2) * (g[j] * g[j] - old_v), tiny)
    p[j] = old_p - lr_t * m[j] / (math.sqrt(v[j]) + epsilon)
    if not (math.isfinite(m[j]) and math.isfinite(v[j]) and math.isfinite(p[j])):
        # keep_finite (as stored, in the arrays' dtype): the old values, and the flag
        p[j], m[j], v[j] = old_p, old_m, old_v
        halted[0] = KEPT


@jit_kernel("void({t}[::1], {t}[::1], {t}[::1], float64, float64, boolean, float64, int32[::1])")
def _sgd(p, g, velocity, lr, momentum, use_momentum, tiny, halted):
    """Nothing changes while halted[0] is set; keep_finite as in _adam."""
    i = cuda.grid(1)
    if i < p.size and halted[0] != 1:  # a NaN loss only (as in _adam)
        old_p, old_velocity = p[i], velocity[i]
        if use_momentum:
            velocity[i] = _flushed(momentum * old_velocity - lr * g[i], tiny)
            p[i] = old_p + velocity[i]
        else:
            p[i] = old_p - lr * g[i]
        if not (math.isfinite(p[i]) and math.isfinite(velocity[i])):
            p[i], velocity[i] = old_p, old_velocity
            halted[0] = KEPT


# The NaN flag of the step being applied ((1,) int32 on the device, or None), set by
# ``guarded_update``: the Adam and SGD kernels read it on the device; the other updates
# (host fallbacks) read it back.
HALTED: contextvars.ContextVar = contextvars.ContextVar("minicnn_cuda_halted", default=None)


@contextlib.contextmanager
def guarded_update(halted):
    """The optimizer's update of a step whose loss kernel may have set ``halted``: it may
    always go ahead (the host does not wait for the GPU), and the update kernels skip their
    work while the flag is set."""
    token = HALTED.set(halted)
    try:
        yield True
    finally:
        HALTED.reset(token)


def unless_halted(update):
    """An update that does nothing while the step's flag is set (read back first), and
    sets it to KEPT when it kept elements (a host fallback's count); returns 0, as every
    update here (the flag says what it kept)."""

    @functools.wraps(update)
    def run(*args):
        halted = HALTED.get()
        if halted is None or not halted.copy_to_host()[0]:
            if update(*args) and halted is not None:
                halted.copy_to_device(np.array([KEPT], np.int32))
        return 0

    return run


def adam_update(p, g, m, v, lr_t, beta_1, beta_2, epsilon):
    return adam_update_many([p], [g], [m], [v], lr_t, beta_1, beta_2, epsilon)


_spare_flag = []  # [a (1,) int32 on the device]: the flag outside guarded_update


def _flag():
    """The step's flag (``guarded_update``), or a spare one, cleared, outside a step."""
    halted = HALTED.get()
    if halted is not None:
        return halted
    if not _spare_flag:
        _spare_flag.append(cuda.to_device(np.zeros(1, np.int32)))
    _spare_flag[0].copy_to_device(np.zeros(1, np.int32))
    return _spare_flag[0]


def adam_update_many(params, grads, ms, vs, lr_t, beta_1, beta_2, epsilon):
    """adam_update of every parameter in one launch (one kernel per step, not per weight);
    none while the step's flag (``guarded_update``) is set, checked by the kernel."""
    halted = _flag()
    ends = tuple(itertools.accumulate(int(p.size) for p in params))
    flat = [tuple(flat_view(a) for a in arrays) for arrays in (params, grads, ms, vs)]
    tiny = float(np.finfo(params[0].dtype).tiny)
    run_kernel(_adam, ends[-1], *flat, ends, lr_t, beta_1, beta_2, epsilon, tiny, halted)
    return 0  # what it kept, the flag says


@jit_kernel("void({t}[::1], int64[::1], {t}[::1], int64)")
def _take_rows(a, rows, out, row_size):
    """One thread per element of out (flat): out[i] = a[rows[i]], rows of row_size values."""
    idx = cuda.grid(1)
    if idx < out.size:
        i = idx // row_size
        out[idx] = a[rows[i] * row_size + idx % row_size]


def take_rows(a, rows, out):
    row_size = out.size // max(out.shape[0], 1)
    run_kernel(_take_rows, out.size, flat_view(a), rows, flat_view(out), row_size)
    return out


def sgd_update(p, g, velocity, lr, momentum, nesterov=False):
    if nesterov:
        return unless_halted(host_fallback(ref_optimizers.sgd_update))(
            p, g, velocity, lr, momentum, nesterov)
    v = flat_view(velocity) if velocity is not None else flat_view(p)  # unused without momentum
    run_kernel(_sgd, p.size, flat_view(p), flat_view(g), v, lr, momentum, momentum != 0,
            float(np.finfo(p.dtype).tiny), _flag())
    return 0  # what it kept, the flag says

