"""Cython backend: the Numba backend's kernels compiled ahead of time with OpenMP
(``_kernels.pyx`` and its include files, one per operation), driven by the same Python
code (``compiled.py``). Built by ``pip install -e .``; where the extension is missing,
importing this module raises ImportError and the registry says how to build it.
"""

from __future__ import annotations

from ..blas import numpy_cblas_gemm
from ..compiled import CompiledCPUBackend
from ..threads import cpu_threads
from . import _kernels  # ImportError when not built

COMPILED_FILE = _kernels.__file__
_kernels.use_cblas(*(numpy_cblas_gemm() or (0, 0)))  # NumPy's BLAS, else SciPy's


class CythonBackend(CompiledCPUBackend):
    """The compiled OpenMP kernels for every product, pool, norm, loss and update; the rest
    (memory, the other losses, metrics) is the reference's."""

    name = "cython"
    kernels = _kernels

    def _threads(self) -> int:
        return cpu_threads()
