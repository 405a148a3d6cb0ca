"""Backend registry: which kernel implementation the layers call.

A backend is an instance of a class derived from the NumPy reference,
``reference.NumpyBackend``, which defines every kernel of the contract (``contract.py``):
``numba.NumbaBackend``, ``cython.CythonBackend`` (both driven by ``compiled.py``) and
``cuda.CudaBackend`` override the kernels they make fast and inherit the rest. Layers call
``get_backend().conv2d_forward(...)``; an editor follows that to the class and its module.

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

from . import results
from .contract import KERNELS
from .reference import NumpyBackend

Backend = NumpyBackend  # every backend is a NumpyBackend (the type to annotate with)

# name -> (module, class, how to get it when it cannot be imported)
_REGISTRY = {
    "numpy": ("minicnn.backends.reference", "NumpyBackend", "it is always available"),
    "numba": ("minicnn.backends.numba", "NumbaBackend", "install numba: pip install numba"),
    "cython": (
        "minicnn.backends.cython", "CythonBackend",
        "build the compiled extension: pip install -e . (needs a C compiler and Cython)",
    ),
    "cuda": (
        "minicnn.backends.cuda", "CudaBackend",
        "it needs an NVIDIA GPU with a working driver and numba's CUDA target "
        "(pip install 'minicnn[cuda]'), or NUMBA_ENABLE_CUDASIM=1 for the simulator",
    ),
}


def to_numpy(a) -> np.ndarray:
    """A host NumPy view/copy of an array from any backend (device arrays are copied back)."""
    return a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a)


_loaded: dict[str, Backend] = {}


def _load(name: str) -> Backend:
    if name not in _REGISTRY:
        raise ValueError(f"unknown backend {name!r}; expected one of {sorted(_REGISTRY)}")
    if name in _loaded:
        return _loaded[name]
    path, class_name, remedy = _REGISTRY[name]
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
    backend_class = getattr(module, class_name)
    check = getattr(backend_class, "check_available", None)
    try:
        if check is not None:
            check()
    except RuntimeError as exc:
        raise RuntimeError(
            f"backend {name!r} is not available here: {exc}. To get it, {remedy}."
        ) from None
    _loaded[name] = backend_class()
    return _loaded[name]


def from_module(module: ModuleType) -> Backend:
    """A backend made of a module's functions named as contract kernels (a learner's own,
    checked by ``python -m minicnn.check``), the reference's for every other kernel. Its
    class is checked like every backend's: a kernel with the wrong arguments is an error."""
    own = {name: fn for name, fn in vars(module).items()
           if name in KERNELS and callable(fn) and not isinstance(fn, type)}
    if not own:
        raise ValueError(f"module {module.__name__!r} defines no kernel of the contract "
                         "(minicnn/backends/contract.py lists their names)")
    calls = dict.fromkeys(own, 0)
    kernels = {name: staticmethod(_counted(fn, name, calls, module.__name__))
               for name, fn in own.items()}
    cls = type(f"{module.__name__}Backend", (NumpyBackend,),
               {"name": module.__name__, "module_calls": calls, **kernels})
    return cls()


def _counted(fn, name: str, calls: dict, module: str):
    """``fn``, counting its calls in ``calls[name]`` (fit says which of a learner's kernels
    a model used) and holding what it returns to the kind of the reference's result for
    such arguments (``results.result_mismatch``, the reference run once per kind of
    arguments): a TypeError naming the kernel, not a failure in the next one."""
    kinds: dict = {}
    reference, params = getattr(NumpyBackend, name), KERNELS[name][0]

    @functools.wraps(fn)
    def call(*args):
        calls[name] += 1
        signature = tuple(_kind_of_argument(param, a) for param, a in zip(params, args))
        if signature not in kinds:
            copies = [np.array(a, copy=True) if isinstance(a, np.ndarray) else
                      [np.array(b, copy=True) for b in a] if isinstance(a, list) else a
                      for a in args]
            kinds[signature] = results.kind_of(reference(*copies))
        result = fn(*args)
        problem = results.result_mismatch(name, result, kinds[signature])
        if problem:
            raise TypeError(f"the kernel {name} of {module!r}: {problem} (as the "
                            "reference's; python -m minicnn.check checks a kernel file)")
        return result

    return call


def _kind_of_argument(param: str, a):
    """What of an argument decides the kind of a kernel's result: an array's shape and
    dtype, a list's length, a flag's or a geometry's value; not a rate, a step size or a
    Dropout key (they change every step)."""
    if isinstance(a, np.ndarray):
        return a.shape, a.dtype
    if isinstance(a, list):
        return len(a)
    return None if isinstance(a, float) or param == "key" else a


def _resolve(backend: str | ModuleType | Backend) -> Backend:
    """A backend from its name, a module of kernels (``from_module``) or itself."""
    if isinstance(backend, NumpyBackend):
        return backend
    if isinstance(backend, ModuleType):
        return from_module(backend)
    return _load(backend)


def load(name: str) -> Backend:
    """The backend object called ``name`` (its kernels as methods), without activating it:
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


def set_backend(name: str | ModuleType | Backend) -> None:
    """Make ``name`` ("numpy", "numba", "cython" or "cuda", or a module of your own kernels)
    the active backend everywhere (inside a ``use_backend`` block, for the rest of it too)."""
    global _default
    _default = _resolve(name)
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
def use_backend(name: str | ModuleType | Backend) -> Iterator[Backend]:
    """Temporarily switch backend in this thread or task: ``with use_backend("numba"): ...``;
    a module of your own kernels works too (``from_module``)."""
    token = _override.set(_resolve(name))
    try:
        yield _override.get()
    finally:
        _override.reset(token)
