"""One thread pool at a time: the CPU backends parallelise their own loops, BLAS calls
included, so while a model runs the BLAS libraries are held to one thread each."""

from __future__ import annotations

import os

# OpenMP threads (Numba's and Cython's) must sleep as soon as a parallel loop ends, or they
# spin on the cores that whatever runs next needs. Read when the OpenMP runtime loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import scipy.linalg.cython_blas  # noqa: E402, F401  (load the BLAS our kernels call)
from threadpoolctl import threadpool_limits  # noqa: E402


def blas_single_thread():
    """Context manager: every loaded BLAS on one thread; restored on exit."""
    return threadpool_limits(1, user_api="blas")


def chunks_for(n: int, threads: int) -> int:
    """How many contiguous chunks of n rows to give the threads (one each, none empty)."""
    return max(1, min(n, threads))
