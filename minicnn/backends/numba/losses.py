"""Softmax cross-entropy and its gradient, with each row's hit, in one pass per row."""

from __future__ import annotations

import math

from numba import njit

from .jit import JIT


@njit(**JIT)
def softmax_cross_entropy(z, y, summary, dz):
    """Per row: summary[0, r] = logsumexp(z_r) - <y_r, z_r>, summary[1, r] = 1 if the top
    logit (the first, on ties) is the true class (the accuracy, same pass);
    dz = (softmax(z) - y) / N."""
    n, k = z.shape
    for r in range(n):
        best, best_y = 0, 0
        for j in range(1, k):
            if z[r, j] > z[r, best]:
                best = j
            if y[r, j] > y[r, best_y]:
                best_y = j
        top = z[r, best]
        total = 0.0
        for j in range(k):
            total += math.exp(z[r, j] - top)
        log_total = math.log(total) + top
        loss = 0.0
        for j in range(k):
            loss += y[r, j] * (log_total - z[r, j])
            dz[r, j] = (math.exp(z[r, j] - log_total) - y[r, j]) / n
        summary[0, r] = loss
        summary[1, r] = (z[r, 0] > 0.0) == (y[r, 0] > 0.5) if k == 1 else best == best_y


