"""Large freed arrays kept for the next step: glibc's malloc told not to hand them back.

A training step allocates its large arrays (a layer's output, BatchNorm's x_hat, a
gradient) afresh and frees them when the step ends. By default glibc gives a freed block
of more than a few MB back to the operating system, so the next step's array of the same
size is new memory again, and the first write to each of its pages is a page fault that
the kernel must serve (and zero) before the loop can go on. ``keep_freed_memory`` raises
the sizes at which malloc maps a block of its own (``M_MMAP_THRESHOLD``) and returns the
top of its heap (``M_TRIM_THRESHOLD``), so that a step reuses the last step's memory: the
process keeps the memory of its largest step, as it would hold it during that step anyway.
docs/performance.md ("Page faults") has the measurements. Where malloc is not glibc's
(macOS, Windows, musl), there is no ``mallopt`` and nothing changes.
"""

from __future__ import annotations

import ctypes
import functools

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest allowed value on 64-bit systems
TRIM_THRESHOLD = 2**30  # free memory at the heap's top kept for reuse, at most


@functools.cache
def keep_freed_memory() -> bool:
    """Set malloc's two thresholds once per process; -> whether this C library took them."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
        bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
