"""Output-size arithmetic shared by every backend (TensorFlow's 'valid'/'same' rules)."""

from __future__ import annotations

import math
from typing import NamedTuple


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
