"""How the Numba kernels are compiled: cached on disk where possible, without the GIL,
and with Numba's thread pool sized to the cores this process may use.

Arrays come out of a tuple argument by index (``dw, dx = grads[0], grads[2]``), never by
unpacking the argument itself (``dw, db, dx = grads``): in a parallel kernel, Numba 0.68
silently drops the writes ``dw[chunk] = value`` to an array unpacked from a tuple argument
(``tests/backends/test_thread_counts.py`` and the equivalence tests would fail).

No fastmath (but in one check whose answer no order of its sum changes:
``optimizers._any_not_finite``): results match the reference up to float rounding (sums are
split per chunk and added in a fixed order, so the same input gives the same bits every run).
"""

from __future__ import annotations

import warnings

import numba
from numba import njit

from ..threads import cpu_threads

# Shown when a model's first step is slow: Numba compiles the kernels on first use.
COMPILE_NOTICE = ("minicnn: compiling the numba kernels for this model (first run only; "
                  "they are cached on disk afterwards) ...")

def _cache_probe(x):
    return x


def _caching_works() -> bool:
    """Numba caches compiled kernels beside this file or in the user's cache folder; where
    neither is writable, compile in memory on every run rather than lose the backend."""
    try:
        njit(cache=True)(_cache_probe)
    except RuntimeError as exc:
        warnings.warn(f"minicnn: numba cannot cache its compiled kernels here ({exc}); they "
                      "are compiled in memory on every run. Set NUMBA_CACHE_DIR to a writable "
                      "folder to keep them.", RuntimeWarning, stacklevel=2)
        return False
    return True


JIT = {"cache": _caching_works(), "nogil": True}
# Numba sizes its pool from the host's CPU count; use the cores this process may run on.
numba.set_num_threads(min(numba.config.NUMBA_NUM_THREADS, cpu_threads()))
