"""Device memory: uploads and read-backs, the buffers a step reuses, and the reference's
kernels run on host copies (host_fallback).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import weakref

import numpy as np
from numba import cuda

from .launch import flat_view, is_device, jit_kernel, reshaped, run_kernel

# ----------------------------------------------------------------------------- memory


class _StepBuffers:
    """The device buffers one kind of step asks for, in the order it asks. A step of the
    same model, phase and batch size asks for the same shapes in the same order, so from
    the second step on every request is served by the buffer it got last time: no device
    allocation (cudaMalloc costs far more than a kernel launch). A request that differs
    (another code path) gets a fresh buffer in that place."""

    def __init__(self):
        self.buffers: list = []
        self.next = 0

    def take(self, shape: tuple, dtype):
        i, dtype = self.next, np.dtype(dtype)
        self.next += 1
        if i < len(self.buffers) and self.buffers[i].shape == shape \
                and self.buffers[i].dtype == dtype:
            return self.buffers[i]
        buffer = cuda.device_array(shape, dtype=dtype)
        self.buffers[i:i + 1] = [buffer]
        return buffer


_steps: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # owner -> {kind: buffers}
_active_step: contextvars.ContextVar = contextvars.ContextVar("minicnn_cuda_step", default=None)


@contextlib.contextmanager
def step_buffers(owner, phase: str, batch: int):
    """Serve this step's temporaries from the buffers of the last (owner, phase, batch) step.

    Only temporaries come from here (kernel outputs, uploaded batches); weights and
    optimizer state are made outside steps or by ``zeros_like``, which always allocates.
    """
    buffers = _steps.setdefault(owner, {}).setdefault((phase, batch), _StepBuffers())
    buffers.next = 0
    token = _active_step.set(buffers)
    try:
        yield
    finally:
        _active_step.reset(token)


def empty_device(shape, dtype):
    """An uninitialised device array: a step buffer inside ``step_buffers``, else new."""
    shape = tuple(int(d) for d in shape)
    step = _active_step.get()
    return cuda.device_array(shape, dtype=dtype) if step is None else step.take(shape, dtype)


def to_device(a):
    """Host array -> device array (device arrays pass through)."""
    if is_device(a):
        return a
    a = np.ascontiguousarray(a)
    if _active_step.get() is None:
        return cuda.to_device(a)
    out = empty_device(a.shape, a.dtype)
    out.copy_to_device(a)
    return out


def to_host(a) -> np.ndarray:
    return a.copy_to_host() if is_device(a) else np.asarray(a)


def empty_like(a):
    return empty_device(a.shape, a.dtype)


def zeros_like(a):
    """Zeros in new device memory (never a step buffer: optimizer state outlives steps)."""
    out = cuda.device_array(a.shape, dtype=a.dtype)
    run_kernel(fill_device, out.size, flat_view(out), 0.0)
    return out


def host_fallback(fn):
    """Run a reference kernel on host copies; arrays in its result go back to the device.

    One host copy per device array, however often it is passed (``add_scaled(p, p, a)``
    must see the same array twice), and each is copied back once (in-place kernels).
    """

    @functools.wraps(fn)
    def run(*args):
        copies = {id(a): (a, to_host(a)) for a in args if is_device(a)}
        out = fn(*[copies[id(a)][1] if is_device(a) else a for a in args])
        for dev, host in copies.values():
            dev.copy_to_device(host)
        if isinstance(out, tuple):
            return tuple(to_device(o) if isinstance(o, np.ndarray) else o for o in out)
        return to_device(out) if isinstance(out, np.ndarray) else out

    return run


def reshape(a, shape):
    """A kept view (see ``_view``): the layers' reshapes (Flatten, ...) cost a lookup."""
    shape = tuple(int(d) for d in shape)
    if -1 in shape:
        known = math.prod(d for d in shape if d != -1)
        shape = tuple(a.size // known if d == -1 else d for d in shape)
    return reshaped(a, *shape)


@jit_kernel("void({t}[::1], float64)")
def fill_device(a, value):
    idx = cuda.grid(1)
    if idx < a.size:
        a[idx] = value


