"""Which BLAS library the compiled kernels multiply with.

Both compiled backends call BLAS gemm themselves, single-threaded, once per chunk of rows.
Two BLAS libraries are loaded in every minicnn process: NumPy's own (the one ``np.dot``
uses) and SciPy's (``scipy.linalg.cython_blas``, the one Numba's ``np.dot`` calls). They
need not be the same build: NumPy's wheels bundle their own OpenBLAS, exported as CBLAS
with 64-bit sizes (ILP64). The kernels call NumPy's where it exports those entry points,
and SciPy's otherwise, or when ``$MINICNN_BLAS`` is ``scipy`` (to compare the two:
docs/performance.md).
"""

from __future__ import annotations

import ctypes
import os

from .threads import blas_libraries

# NumPy's CBLAS gemm with 64-bit sizes under the names its wheels have used: scipy-openblas64
# (NumPy >= 2) and openblas64_ (NumPy 1.x).
CBLAS_GEMM64_NAMES = (("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_"),
                      ("cblas_sgemm64_", "cblas_dgemm64_"))
CHOICES = ("numpy", "scipy")


def choice() -> str:
    """``$MINICNN_BLAS`` (``numpy`` unless set), checked."""
    chosen = os.environ.get("MINICNN_BLAS", "numpy").strip().lower() or "numpy"
    if chosen not in CHOICES:
        raise ValueError(f"MINICNN_BLAS must be one of {CHOICES}, got "
                         f"{os.environ['MINICNN_BLAS']!r}")
    return chosen


def numpy_cblas_gemm() -> tuple[int, int] | None:
    """Addresses of (sgemm, dgemm) with the CBLAS interface and 64-bit sizes in a loaded BLAS
    library (NumPy's), or None where there is none or ``$MINICNN_BLAS`` is ``scipy``."""
    if choice() == "scipy":
        return None
    for library in blas_libraries().select(user_api="blas").lib_controllers:
        try:
            found = ctypes.CDLL(library.filepath)
        except OSError:
            continue
        for names in CBLAS_GEMM64_NAMES:
            if all(hasattr(found, name) for name in names):
                return tuple(ctypes.cast(getattr(found, name), ctypes.c_void_p).value
                             for name in names)
    return None
