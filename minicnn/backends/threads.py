"""One thread pool at a time: the CPU backends parallelise their own loops, BLAS calls
included, so while a model runs the BLAS libraries are held to one thread each (two pools
on the same cores oversubscribe each other: docs/performance.md)."""

from __future__ import annotations

import functools
import os

import scipy.linalg.cython_blas  # noqa: F401  (load the BLAS our kernels call)
from threadpoolctl import ThreadpoolController


@functools.cache
def blas_libraries() -> ThreadpoolController:
    """NumPy's and SciPy's BLAS (the ones the kernels call), looked up once: every
    ``train_on_batch`` opens a session, and the look-up is not free."""
    return ThreadpoolController()


def blas_single_thread():
    """Context manager: NumPy's and SciPy's BLAS on one thread; restored on exit."""
    return blas_libraries().limit(limits=1, user_api="blas")


def chunks_for(n: int, threads: int) -> int:
    """How many contiguous chunks of n rows to give the threads (one each, none empty).

    The kernels cut n rows into runs of ceil(n / chunks) rows; that many runs of that
    size are what reaches the end of the rows (36 rows for 16 threads: 12 runs of 3, not
    16, whose last four would be empty)."""
    chunks = max(1, min(n, threads))
    step = -(-n // chunks)
    return max(1, -(-n // step)) if n > 0 else 1


def cpu_threads() -> int:
    """Threads the CPU backends run: ``$MINICNN_NUM_THREADS`` if set, else the cores this
    process may use (its affinity mask: ``os.cpu_count()`` counts a container's host). The
    compiled backends ask at every kernel call, so the answer is worked out once per value
    of the variable."""
    return _threads_for(os.environ.get("MINICNN_NUM_THREADS"))


@functools.cache
def _threads_for(configured: str | None) -> int:
    if configured:
        if not configured.strip().isdigit() or int(configured) < 1:
            raise ValueError(f"MINICNN_NUM_THREADS must be a whole number >= 1, got "
                             f"{configured!r}")
        return int(configured)
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # no affinity masks on this OS
