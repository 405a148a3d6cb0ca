"""The merge kernels (reference/merge.py) on the device: one thread per element."""

from __future__ import annotations

from numba import cuda

from ..shapes import require_joinable, require_same_shape, require_splittable
from .launch import flat_view, jit_kernel, run_kernel
from .memory import empty_device, empty_like


@jit_kernel("void({t}[::1], {t}[::1], {t}[::1])")
def _add(a, b, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = a[i] + b[i]


@jit_kernel("void({t}[:, :, ::1], {t}[:, :, ::1], {t}[:, :, ::1], int64)")
def _join_or_split(whole, a, b, join):
    """whole (M, Ca+Cb, K) is a then b along axis 1: join writes whole, else a and b."""
    i = cuda.grid(1)
    c_total, k_size = whole.shape[1], whole.shape[2]
    if i >= whole.shape[0] * c_total * k_size:
        return
    m, c, k = i // (c_total * k_size), (i // k_size) % c_total, i % k_size
    ca = a.shape[1]
    if join:
        whole[m, c, k] = a[m, c, k] if c < ca else b[m, c - ca, k]
    elif c < ca:
        a[m, c, k] = whole[m, c, k]
    else:
        b[m, c - ca, k] = whole[m, c, k]


def add_forward(a, b):
    require_same_shape(a=a, b=b)
    out = empty_like(a)
    run_kernel(_add, out.size, flat_view(a), flat_view(b), flat_view(out))
    return out


def concatenate_forward(a, b):
    require_joinable(a, b)
    out = empty_device((a.shape[0], a.shape[1] + b.shape[1], a.shape[2]), a.dtype)
    run_kernel(_join_or_split, out.size, out, a, b, 1)
    return out


def concatenate_backward(dy, split):
    require_splittable(dy, split)
    da = empty_device((dy.shape[0], split, dy.shape[2]), dy.dtype)
    db = empty_device((dy.shape[0], dy.shape[1] - split, dy.shape[2]), dy.dtype)
    run_kernel(_join_or_split, dy.size, dy, da, db, 0)
    return da, db
