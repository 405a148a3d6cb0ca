"""Launching numba.cuda kernels: each compiled once per dtype for an explicit signature,
one thread per element; views of device arrays kept for reuse.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
from numba import config as numba_config
from numba import cuda
from numba.core import sigutils

# Numba's simulator runs every GPU thread as a Python thread: tests there use small blocks.
SIMULATED = bool(numba_config.ENABLE_CUDASIM)
TILE = 4 if SIMULATED else 16  # matrix-product tile: TILE x TILE threads per block
THREADS = 32 if SIMULATED else 256  # threads per block of the element-wise kernels


def check_available() -> None:
    """Raise RuntimeError unless a CUDA device (or Numba's simulator) is usable."""
    if not cuda.is_available():
        raise RuntimeError("no CUDA device was found (numba.cuda.is_available() is False)")


class _Kernel:
    """A kernel compiled for an explicit signature, once per dtype it meets.

    ``signature`` is numba's type string with ``{t}`` for the dtype of the first array
    argument (of the first tuple's arrays, for Adam's) and ``{k}`` for the length of the
    first tuple argument. A dispatcher compiled for one signature is *specialized*: its
    launch skips typing the arguments and looking up an overload (most of numba-cuda's
    per-launch Python time), and it checks nothing -- an argument of another type would
    be read as the declared one. So under the simulator (which ignores signatures) every
    launch checks its arguments against the declaration instead: the tests run the same
    launches and fail on any mismatch.
    """

    def __init__(self, fn, signature: str):
        self.fn, self.signature = fn, signature
        self.variants: dict = {}  # (dtype, tuple length) -> (dispatcher, argument types)

    def __getitem__(self, config):
        return functools.partial(self._start, config)

    def _start(self, config, *args) -> None:
        first = next(a for a in args if is_device(a) or isinstance(a, tuple))
        first = first[0] if isinstance(first, tuple) else first
        tuples = [len(a) for a in args if isinstance(a, tuple)]
        key = (np.dtype(first.dtype), tuples[0] if tuples else 0)
        if key not in self.variants:
            signature = self.signature.format(t=key[0].name, k=key[1])
            self.variants[key] = (cuda.jit(signature)(self.fn),
                                  sigutils.normalize_signature(signature)[0])
        dispatcher, declared = self.variants[key]
        if SIMULATED:
            _check_arguments(self.fn.__name__, declared, args)
        dispatcher[config](*args)


def jit_kernel(signature: str):
    """Decorator: ``fn`` as a ``_Kernel`` compiled for ``signature``."""
    return lambda fn: _Kernel(fn, signature)


def _numba_type(value):
    """The type numba-cuda gives a launch argument (simulated device arrays: their array)."""
    if isinstance(value, tuple):
        return numba.typeof(tuple(v._ary if is_device(v) else v for v in value))
    return numba.typeof(value._ary if is_device(value) else value)


def _check_arguments(name: str, declared: tuple, args: tuple) -> None:
    if len(declared) != len(args):
        raise TypeError(f"{name}: {len(args)} arguments, its signature declares "
                        f"{len(declared)}")
    for i, (want, arg) in enumerate(zip(declared, args)):
        got = _numba_type(arg)
        if got != want:
            raise TypeError(f"{name}: argument {i} is {got}, its signature declares {want}")


def run_kernel(kernel, n: int, *args) -> None:
    """Start ``kernel`` with one thread per element for ``n`` elements.

    (Never cache ``kernel[blocks, threads]``: Numba's simulator configures the kernel
    object in place, so a cached configuration silently takes the last grid size set.)
    """
    kernel[max(1, math.ceil(n / THREADS)), THREADS](*args)


def _view(a, key, make):
    """``make()``, a view of the device array ``a``, made once per ``key`` and kept on ``a``.

    numba-cuda builds every view object (a reshape, a slice) in Python, and a step makes
    dozens; but the arrays of a step live long (weights, step buffers, views of those), so
    from the second step on each view is a dictionary lookup. (A view shares ``a``'s memory:
    it stays right for as long as ``a`` lives, whatever is written into it.)
    """
    views = a.__dict__.setdefault("_minicnn_views", {})
    view = views.get(key)
    if view is None:
        view = views[key] = make()
    return view


def reshaped(a, *shape):
    shape = tuple(int(d) for d in shape)
    return a if tuple(a.shape) == shape else _view(a, shape, lambda: a.reshape(*shape))


def part_view(a, index):
    """a[index] for an int or a slice of the first axis, as a kept view."""
    key = (index.start, index.stop) if isinstance(index, slice) else index
    return _view(a, ("part", key), lambda: a[index])


def flat_view(a):
    return reshaped(a, a.size)


def is_device(a) -> bool:
    return hasattr(a, "copy_to_host")  # numba device arrays (real or simulated)


def as_rows(a, f: int):
    return None if a is None else reshaped(a, a.size // f, f)


@cuda.jit(device=True)
def unravel_nhwc(idx, h, w, c):
    """Flat index of a C-contiguous (N, H, W, C) array -> (n, y, x, channel)."""
    return idx // (c * w * h), (idx // (c * w)) % h, (idx // c) % w, idx % c


def synchronize() -> None:
    """Wait for every launched kernel to finish (timing a step needs it)."""
    cuda.synchronize()
