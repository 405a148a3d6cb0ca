"""Backend registry: which kernel implementation the layers call.

A backend is a module of kernel functions; ``contract.KERNELS`` lists every kernel with
its arguments and shapes. A backend that lacks a kernel falls back to the NumPy
reference (which has them all); a device backend (CUDA) wraps that fallback so arrays
cross to the host and back.

    >>> import minicnn
    >>> minicnn.set_backend("numpy")
    >>> with minicnn.use_backend("numba"):
    ...     ...
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import os
from collections.abc import Iterator
from types import ModuleType

import numpy as np

from . import numpy_ref
from .contract import CONV_THEN_POOL, KERNELS

# name -> (module path, how to get it when it cannot be imported)
_REGISTRY = {
    "numpy": ("minicnn.backends.numpy_ref", "it is always available"),
    "numba": ("minicnn.backends.numba_cpu", "install numba: pip install numba"),
    "cython": (
        "minicnn.backends.cython_backend",
        "build the compiled extension: pip install -e . (needs a C compiler and Cython)",
    ),
    "cuda": (
        "minicnn.backends.cuda",
        "it needs an NVIDIA GPU with a working driver and numba's CUDA target "
        "(pip install 'minicnn[cuda]'), or NUMBA_ENABLE_CUDASIM=1 for the simulator",
    ),
}


class Backend:
    """A named set of kernels; attributes missing from the module come from the reference
    (a fused conv + pool pair: made of the backend's own conv and pool kernels)."""

    def __init__(self, name: str, module: ModuleType):
        self.name = name
        self.module = module
        self.on_device = getattr(module, "ON_DEVICE", False)

    def __getattr__(self, kernel: str):
        if kernel not in KERNELS:
            raise AttributeError(f"{kernel!r} is not a kernel of the backend contract "
                                 "(minicnn/backends/contract.py lists them)")
        fn = getattr(self.module, kernel, None)
        if fn is None and kernel in CONV_THEN_POOL:
            fn = numpy_ref.conv_then_pool(self)[CONV_THEN_POOL.index(kernel)]
        elif fn is None:
            fn = getattr(numpy_ref, kernel)
            if self.on_device:
                fn = self.module.host_fallback(fn)
        setattr(self, kernel, fn)  # cache: the next lookup is a plain attribute
        return fn

    def session(self) -> contextlib.AbstractContextManager:
        """Context a model runs in (e.g. the numba backend keeps BLAS to one thread)."""
        hook = getattr(self.module, "session", None)
        return hook() if hook is not None else contextlib.nullcontext()

    def step_buffers(self, owner, phase: str, batch: int) -> contextlib.AbstractContextManager:
        """Context around one step of ``owner`` (upload, forward, backward, update): the CUDA
        backend then hands the step's temporaries out of buffers kept for the next step of
        the same (owner, phase, batch size), so it allocates nothing after the first."""
        hook = getattr(self.module, "step_buffers", None)
        return hook(owner, phase, batch) if hook is not None else contextlib.nullcontext()

    def adam_update_many(self, params, grads, ms, vs, lr_t: float, beta_1: float,
                         beta_2: float, epsilon: float, halted=None) -> None:
        """``adam_update`` of several parameters: one kernel launch on the CUDA backend,
        one call per parameter elsewhere. Nothing changes while ``halted`` ((1,) int32 in
        the backend's memory, see ``softmax_cross_entropy_totals``) is set: the CUDA
        kernel reads it on the device, so the host never waits for it."""
        many = getattr(self.module, "adam_update_many", None)
        if many is not None:
            return many(params, grads, ms, vs, lr_t, beta_1, beta_2, epsilon, halted)
        if self.is_halted(halted):
            return
        for p, g, m, v in zip(params, grads, ms, vs):
            self.adam_update(p, g, m, v, lr_t, beta_1, beta_2, epsilon)

    def is_halted(self, halted) -> bool:
        """The flag is given and set (on a device: read back, so the host waits for it)."""
        return halted is not None and bool(self.to_host(halted)[0])

    def __repr__(self) -> str:
        return f"<minicnn backend {self.name!r}>"


def to_numpy(a) -> np.ndarray:
    """A host NumPy view/copy of an array from any backend (device arrays are copied back)."""
    return a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a)


_loaded: dict[str, Backend] = {}


def _load(name: str) -> Backend:
    if name not in _REGISTRY:
        raise ValueError(f"unknown backend {name!r}; expected one of {sorted(_REGISTRY)}")
    if name in _loaded:
        return _loaded[name]
    path, remedy = _REGISTRY[name]
    try:
        module = importlib.import_module(path)
    except ImportError as exc:
        raise RuntimeError(
            f"backend {name!r} is not available here: {exc}. To get it, {remedy}."
        ) from None
    except (RuntimeError, OSError) as exc:  # installed, but it broke while loading
        raise RuntimeError(
            f"backend {name!r} is installed but failed to load: {type(exc).__name__}: {exc}"
        ) from None
    try:
        check = getattr(module, "check_available", None)
        if check is not None:
            check()
    except RuntimeError as exc:
        raise RuntimeError(
            f"backend {name!r} is not available here: {exc}. To get it, {remedy}."
        ) from None
    _loaded[name] = Backend(name, module)
    return _loaded[name]


def load(name: str) -> Backend:
    """The backend object called ``name`` (its kernels as attributes), without activating it:
    ``minicnn.backends.load("numba").conv2d_forward(...)``. Raises like ``set_backend``."""
    return _load(name)


def available_backends() -> list[str]:
    """Names of the backends that can run on this machine, reference first."""
    names = []
    for name in _REGISTRY:
        try:
            _load(name)
            names.append(name)
        except RuntimeError:
            pass
    return names


def _default_name() -> str:
    env = os.environ.get("MINICNN_BACKEND")
    if env:
        return env
    try:
        _load("numba")
        return "numba"
    except RuntimeError:
        return "numpy"


# The process-wide choice (set_backend, $MINICNN_BACKEND) and, per thread and asyncio task,
# a temporary override (use_backend): a ContextVar, so one thread's ``with`` block does
# not switch the backend under another thread.
_default: Backend | None = None
_override: contextvars.ContextVar[Backend | None] = contextvars.ContextVar(
    "minicnn_backend", default=None)


def get_backend() -> Backend:
    """The active backend: this context's ``use_backend``, else ``set_backend``'s choice,
    else ``$MINICNN_BACKEND``, else numba if it imports, else numpy."""
    global _default
    override = _override.get()
    if override is not None:
        return override
    if _default is None:
        _default = _load(_default_name())
    return _default


def set_backend(name: str) -> None:
    """Make ``name`` ("numpy", "numba", "cython" or "cuda") the active backend everywhere
    (inside a ``use_backend`` block, for the rest of that block too)."""
    global _default
    _default = _load(name)
    if _override.get() is not None:
        _override.set(_default)


def in_session(method):
    """Decorator for public entry points that run kernels: the body runs inside the active
    backend's ``session()`` (its thread policy: BLAS held to one thread for the CPU
    backends, whose own pools do the parallel work), like ``Sequential.fit``."""

    @functools.wraps(method)
    def run(*args, **kwargs):
        with get_backend().session():
            return method(*args, **kwargs)

    return run


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[Backend]:
    """Temporarily switch backend in this thread or task: ``with use_backend("numba"): ...``."""
    token = _override.set(_load(name))
    try:
        yield _override.get()
    finally:
        _override.reset(token)
