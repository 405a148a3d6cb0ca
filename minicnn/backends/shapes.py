"""Output-size arithmetic shared by every backend (TensorFlow's 'valid'/'same' rules)."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np


class ConvGeometry(NamedTuple):
    """Output size and the zero padding on each side of one convolution."""

    out_h: int
    out_w: int
    pad_top: int
    pad_bottom: int
    pad_left: int
    pad_right: int


def _axis(size: int, k: int, s: int, padding: str) -> tuple[int, int, int]:
    if padding == "valid":
        return (size - k) // s + 1, 0, 0
    out = math.ceil(size / s)
    total = max((out - 1) * s + k - size, 0)
    return out, total // 2, total - total // 2  # TF puts the odd pixel at the end


def conv_geometry(
    h: int, w: int, kh: int, kw: int, stride: tuple[int, int], padding: str
) -> ConvGeometry:
    """'valid': out = floor((n - k) / s) + 1; 'same': out = ceil(n / s), padded evenly."""
    oh, pt, pb = _axis(h, kh, stride[0], padding)
    ow, pl, pr = _axis(w, kw, stride[1], padding)
    return ConvGeometry(oh, ow, pt, pb, pl, pr)


def pool_geometry(
    h: int, w: int, pool: tuple[int, int], stride: tuple[int, int]
) -> tuple[int, int]:
    """Max pooling uses 'valid' windows: out = floor((n - p) / s) + 1."""
    return (h - pool[0]) // stride[0] + 1, (w - pool[1]) // stride[1] + 1


def require_same_shape(**arrays) -> None:
    """Compiled kernels run without bounds checks: their wrappers call this first.

    ``require_same_shape(param=p, grad=g, m=m)`` raises ValueError naming any mismatch.
    """
    (first, ref), *rest = arrays.items()
    for name, a in rest:
        if a is not None and tuple(a.shape) != tuple(ref.shape):
            raise ValueError(f"{name} has shape {tuple(a.shape)} but {first} has "
                             f"{tuple(ref.shape)}; they must match")


def require_joinable(a, b) -> None:
    """a (M, Ca, K) and b (M, Cb, K), which concatenate_forward joins along axis 1, or
    ValueError."""
    if len(a.shape) != 3 or len(b.shape) != 3 or (a.shape[0], a.shape[2]) != (b.shape[0],
                                                                             b.shape[2]):
        raise ValueError(f"concatenate_forward joins a (M, Ca, K) and b (M, Cb, K) along axis "
                         f"1, got shapes {tuple(a.shape)} and {tuple(b.shape)}")


def require_splittable(dy, split) -> None:
    """dy (M, C, K) and 0 < split < C, which concatenate_backward cuts at, or ValueError."""
    if len(dy.shape) != 3 or not (isinstance(split, (int, np.integer))
                                  and 0 < split < dy.shape[1]):
        raise ValueError(f"concatenate_backward cuts dy (M, C, K) at 0 < split < C along "
                         f"axis 1, got shape {tuple(dy.shape)} and split {split!r}")


def require_real(what: str, **arrays) -> None:
    """The arrays are all float32 or all float64 (the compute dtype), or TypeError: the
    compiled kernels are typed by their inputs and would compute integers (or mix) silently."""
    dtypes = {name: str(a.dtype) for name, a in arrays.items() if a is not None}
    if len(set(dtypes.values())) > 1 or not set(dtypes.values()) <= {"float32", "float64"}:
        got = ", ".join(f"{name} {dtype}" for name, dtype in dtypes.items())
        raise TypeError(f"{what}: the compiled kernels take float32 or float64 arrays, all of "
                        f"one dtype (the compute dtype); got {got}. Convert them first, e.g. "
                        "x.astype(np.float32)")


def require_in_place(what: str, **arrays) -> None:
    """The arrays an update writes in place are C-contiguous, or ValueError naming them: the
    compiled kernels take flat views, and a strided array's flat view would be a copy that
    the update changes instead."""
    strided = [name for name, a in arrays.items() if a is not None
               and not a.flags.c_contiguous]
    if strided:
        raise ValueError(f"{what} updates {', '.join(strided)} in place, so "
                         f"{'it' if len(strided) == 1 else 'each'} must be a C-contiguous "
                         "array, not a strided view (keep the array np.ascontiguousarray(...) "
                         "gives, and update that)")


def require_conv_shapes(x, w, dy=None, b=None, stride=(1, 1), padding="valid") -> None:
    """x (N, H, W, C), w (kh, kw, C, F), b (F,), dy (N, OH, OW, F) consistent, or ValueError
    (TypeError for dtypes: ``require_real``)."""
    require_real("conv", x=x, w=w, b=b, dy=dy)
    if len(x.shape) != 4 or len(w.shape) != 4 or x.shape[3] != w.shape[2]:
        raise ValueError(f"conv: input {tuple(x.shape)} and kernel {tuple(w.shape)} disagree "
                         "(expected (N, H, W, C) and (kh, kw, C, filters))")
    if b is not None and tuple(b.shape) != (w.shape[3],):
        raise ValueError(f"conv: bias has shape {tuple(b.shape)}, expected ({w.shape[3]},)")
    if dy is not None:
        g = conv_geometry(x.shape[1], x.shape[2], w.shape[0], w.shape[1], stride, padding)
        want = (x.shape[0], g.out_h, g.out_w, w.shape[3])
        if tuple(dy.shape) != want:
            raise ValueError(f"conv: output gradient has shape {tuple(dy.shape)}, expected {want}")


def require_dense_shapes(x, w, b=None, dy=None) -> None:
    """x (N, D), w (D, U), b (U,), dy (N, U) consistent, or ValueError (TypeError for
    dtypes: ``require_real``)."""
    require_real("dense", x=x, w=w, b=b, dy=dy)
    if len(x.shape) != 2 or len(w.shape) != 2 or x.shape[1] != w.shape[0]:
        raise ValueError(f"dense: input {tuple(x.shape)} and kernel {tuple(w.shape)} disagree")
    if b is not None and tuple(b.shape) != (w.shape[1],):
        raise ValueError(f"dense: bias has shape {tuple(b.shape)}, expected ({w.shape[1]},)")
    if dy is not None and tuple(dy.shape) != (x.shape[0], w.shape[1]):
        raise ValueError(f"dense: output gradient has shape {tuple(dy.shape)}, expected "
                         f"{(x.shape[0], w.shape[1])}")
