"""The merge kernels (reference/merge.py): Add's sum and Concatenate's join and split, in
parallel over the rows."""

from __future__ import annotations

from numba import njit, prange

from .jit import JIT


@njit(parallel=True, **JIT)
def add(a, b, out):
    """out = a + b, flat arrays."""
    for i in prange(a.size):
        out[i] = a[i] + b[i]


@njit(parallel=True, **JIT)
def join_or_split(whole, a, b, join):
    """whole (M, Ca+Cb, K) is a (M, Ca, K) then b (M, Cb, K) along axis 1: ``join`` writes
    whole from a and b (concatenate_forward), else a and b from whole (its backward)."""
    ca = a.shape[1]
    for m in prange(whole.shape[0]):
        for c in range(whole.shape[1]):
            part, row = (a, c) if c < ca else (b, c - ca)
            for k in range(whole.shape[2]):
                if join:
                    whole[m, c, k] = part[m, row, k]
                else:
                    part[m, row, k] = whole[m, c, k]
