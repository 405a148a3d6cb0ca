"""Softmax cross-entropy with the step's loss sum, hit count and NaN flag left on the
device; accuracy counts.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64

from .launch import THREADS, flat_view, jit_kernel, run_kernel
from .memory import empty_device, empty_like


@cuda.jit(device=True)
def _is_correct(pred, y, r, threshold):
    """Row r's class is right: argmax of pred == argmax of one-hot y (first maximum wins);
    one column: (pred > threshold) == (y > 0.5)."""
    if pred.shape[1] == 1:
        return (pred[r, 0] > threshold) == (y[r, 0] > 0.5)
    best, best_y = 0, 0
    for j in range(1, pred.shape[1]):
        if pred[r, j] > pred[r, best]:
            best = j
        if y[r, j] > y[r, best_y]:
            best_y = j
    return best == best_y


@cuda.jit(device=True)
def _softmax_cross_entropy_row(z, y, dz, r):
    """Row r: dz[r] = (softmax(z_r) - y_r) / N; returns its loss logsumexp(z_r) - <y_r, z_r>."""
    n, k = z.shape
    top = z[r, 0]
    for j in range(1, k):
        top = max(top, z[r, j])
    total = z[r, 0] * 0
    for j in range(k):
        total += math.exp(z[r, j] - top)
    log_total = math.log(total) + top
    row_loss = total * 0
    for j in range(k):
        row_loss += y[r, j] * (log_total - z[r, j])
        dz[r, j] = (math.exp(z[r, j] - log_total) - y[r, j]) / n
    return row_loss


@jit_kernel("void({t}[:, ::1], {t}[:, ::1], {t}[:, ::1], float64[::1])")
def _softmax_cross_entropy(z, y, dz, losses):
    """One thread per row: its loss into losses[r] (float64), its gradient into dz."""
    r = cuda.grid(1)
    if r < z.shape[0]:
        losses[r] = _softmax_cross_entropy_row(z, y, dz, r)


@cuda.jit(device=True)
def _block_totals(partial, t, loss, hits, totals, halted):
    """Thread t's loss and hits added up over the block in shared memory ``partial``
    (THREADS, 2), a fixed tree (the same sum every run), into totals = (loss sum, hits);
    halted[0] = 1 if the loss sum is NaN or inf, unless an earlier step's update set it
    (whose undoing it must not hide: ``optimizers.KEPT``)."""
    partial[t, 0], partial[t, 1] = loss, hits
    cuda.syncthreads()
    half = THREADS // 2
    while half > 0:
        if t < half:
            partial[t, 0] += partial[t + half, 0]
            partial[t, 1] += partial[t + half, 1]
        cuda.syncthreads()
        half //= 2
    if t == 0:
        totals[0], totals[1] = partial[0, 0], partial[0, 1]
        if (math.isnan(partial[0, 0]) or math.isinf(partial[0, 0])) and halted[0] == 0:
            halted[0] = 1


@jit_kernel("void({t}[:, ::1], {t}[:, ::1], {t}[:, ::1], float64[::1], int32[::1])")
def _softmax_cross_entropy_totals(z, y, dz, totals, halted):
    """One block: thread t takes rows t, t + THREADS, ...; then ``_block_totals``."""
    partial = cuda.shared.array((THREADS, 2), float64)
    t = cuda.threadIdx.x
    loss, hits = 0.0, 0.0
    for r in range(t, z.shape[0], THREADS):
        loss += _softmax_cross_entropy_row(z, y, dz, r)
        hits += 1.0 if _is_correct(z, y, r, 0.0) else 0.0
    _block_totals(partial, t, loss, hits, totals, halted)


@cuda.jit(device=True)
def _sparse_row(z, labels, smoothing, dz, r):
    """Row r against the class index labels[r], its target (1 - s) one-hot + s / K (label
    smoothing s): dz[r] = (softmax(z_r) - target) / N; returns the row's loss and whether
    its top logit is the class (first maximum wins)."""
    n, k = z.shape
    label = int(labels[r])
    top, best = z[r, 0], 0
    for j in range(1, k):
        if z[r, j] > top:
            top, best = z[r, j], j
    total = z[r, 0] * 0
    for j in range(k):
        total += math.exp(z[r, j] - top)
    log_total = math.log(total) + top
    spread = smoothing / k
    row_loss = total * 0
    for j in range(k):
        target = spread + (1 - smoothing if j == label else 0)
        row_loss += target * (log_total - z[r, j])
        dz[r, j] = (math.exp(z[r, j] - log_total) - target) / n
    return row_loss, best == label


@jit_kernel("void({t}[:, ::1], {t}[::1], float64, {t}[:, ::1], float64[::1], int32[::1])")
def _sparse_softmax_cross_entropy_totals(z, labels, smoothing, dz, totals, halted):
    """``_softmax_cross_entropy_totals`` for class indices (N,), read as they are: no
    one-hot rows, no smoothed copy (as PyTorch's cross-entropy takes its targets)."""
    partial = cuda.shared.array((THREADS, 2), float64)
    t = cuda.threadIdx.x
    loss, hits = 0.0, 0.0
    for r in range(t, z.shape[0], THREADS):
        row_loss, right = _sparse_row(z, labels, smoothing, dz, r)
        loss += row_loss
        hits += 1.0 if right else 0.0
    _block_totals(partial, t, loss, hits, totals, halted)


def softmax_cross_entropy_totals(logits, y, totals, halted):
    """Loss sum and hits into ``totals`` on the device, one launch, nothing read back."""
    dz = empty_like(logits)
    _softmax_cross_entropy_totals[1, THREADS](logits, y, dz, totals, halted)
    return dz


def sparse_softmax_cross_entropy_totals(logits, labels, smoothing, totals, halted):
    """``softmax_cross_entropy_totals`` against class indices (N,) with label smoothing
    ``smoothing``: one launch for the whole loss, nothing read back."""
    dz = empty_like(logits)
    _sparse_softmax_cross_entropy_totals[1, THREADS](logits, labels, float(smoothing), dz,
                                                     totals, halted)
    return dz


def softmax_cross_entropy(logits, y):
    """Per-row losses and the gradient, both on the device (the Loss takes their mean)."""
    dz = empty_like(logits)
    losses = empty_device((logits.shape[0],), np.float64)
    run_kernel(_softmax_cross_entropy, logits.shape[0], logits, y, dz, losses)
    return losses, dz


@jit_kernel("void({t}[:, ::1], {t}[:, ::1], float64, int8[::1])")
def _count_correct(pred, y, threshold, hits):
    r = cuda.grid(1)
    if r < pred.shape[0]:
        hits[r] = 1 if _is_correct(pred, y, r, threshold) else 0


def count_correct(pred, y, threshold: float = 0.5) -> int:
    hits = empty_device((pred.shape[0],), np.int8)
    run_kernel(_count_correct, pred.shape[0], pred, y, threshold, hits)
    return int(hits.copy_to_host().sum())





@jit_kernel("void({t}[::1], {t}[:, ::1])")
def _one_hot(labels, out):
    """One thread per row r: out[r] = 0 but out[r, labels[r]] = 1."""
    r = cuda.grid(1)
    if r < out.shape[0]:
        label = int(labels[r])
        for j in range(out.shape[1]):
            out[r, j] = 1 if j == label else 0


def one_hot(labels, n_classes: int):
    out = empty_device((labels.shape[0], n_classes), labels.dtype)
    run_kernel(_one_hot, labels.shape[0], labels, out)
    return out


@jit_kernel("void({t}[::1], {t}, {t}, {t}[::1])")
def _smooth_labels(y, keep, add, out):
    """One thread per element: out = keep y + add."""
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = keep * y[i] + add


def smooth_labels(y, smoothing: float, uniform: float):
    out = empty_like(y)
    real = np.dtype(y.dtype).type
    run_kernel(_smooth_labels, y.size, flat_view(y), real(1 - smoothing), real(smoothing * uniform),
            flat_view(out))
    return out
