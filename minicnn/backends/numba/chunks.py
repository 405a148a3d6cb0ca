"""Rows of a chunk, and the per-row epilogues every product kernel shares: the bias (and
fused ReLU) after a forward product, the output gradient (through the ReLU) and its bias
sums before a backward one, and the per-chunk partial sums added up in a fixed order."""

from __future__ import annotations

from numba import njit, prange

from .jit import JIT


@njit(**JIT)
def chunk_rows(chunk, chunks, n):
    """Rows lo..hi of the chunk-th of ``chunks`` near-equal runs of n rows (may be empty)."""
    step = (n + chunks - 1) // chunks
    return chunk * step, min(n, (chunk + 1) * step)


@njit(**JIT)
def add_bias(y2, bias, relu, r0, r1):
    """Rows r0..r1 of y2 += bias, then max(., 0) when relu (the fused epilogue: one pass)."""
    for r in range(r0, r1):
        for f in range(y2.shape[1]):
            v = y2[r, f] + bias[f]
            y2[r, f] = 0.0 if relu and v < 0.0 else v  # (NaN stays NaN, as in the reference)


@njit(**JIT)
def output_gradient_rows(dy2, relu, relu_out, masked, r0, r1, db):
    """Rows r0..r1 of the gradient before the fused ReLU: masked = dy where relu_out > 0,
    else 0 (when relu; else dy is used as it is), and db = their column sums (float64)."""
    db[:] = 0.0
    for r in range(r0, r1):
        for f in range(dy2.shape[1]):
            v = dy2[r, f]
            if relu:
                v = v * (relu_out[r, f] > 0)
                masked[r, f] = v
            db[f] += v
    return masked if relu else dy2



@njit(parallel=True, **JIT)
def sum_parts(parts, out):
    """out = parts[0] + parts[1] + ... (per-chunk weight gradients, added in a fixed order)."""
    for i in prange(out.size):
        total = parts[0, i]
        for chunk in range(1, parts.shape[0]):
            total += parts[chunk, i]
        out[i] = total
