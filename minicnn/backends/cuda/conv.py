"""Convolution: implicit-GEMM products that read the windows straight from the images, and
the input gradient as one gather per input pixel.
"""

from __future__ import annotations

from numba import cuda

from ..shapes import conv_geometry
from .launch import as_rows, jit_kernel, reshaped, run_kernel, unravel_nhwc
from .matmul import Windows, matmul, weight_gradients
from .memory import empty_device


@jit_kernel("void({t}[:, ::1], {t}[:, ::1], boolean, {t}[:, :, :, ::1], {t}[:, :, :, ::1], int64, "
        "int64, int64, int64, int64, int64)")
def _conv_input_gradient(dy2, relu2, masked, w, dx, sh, sw, pad_top, pad_left, out_h, out_w):
    """One thread per input pixel: dx[b, y, x, c] = sum over the windows that read it of
    <dy of that window's output pixel, W[tap, c, :]> -- (dy W^T) and col2im in one pass,
    dy through the fused ReLU when ``masked`` (no atomics, no window matrix)."""
    idx = cuda.grid(1)
    if idx >= dx.size:
        return
    kh, kw, c, f = w.shape
    b, y, xx, ch = unravel_nhwc(idx, dx.shape[1], dx.shape[2], c)
    acc = w[0, 0, 0, 0] * 0
    for di in range(kh):
        ty = y + pad_top - di  # = i * sh for the output row i whose window has tap di here
        if ty < 0 or ty % sh != 0 or ty // sh >= out_h:
            continue
        for dj in range(kw):
            tx = xx + pad_left - dj
            if tx < 0 or tx % sw != 0 or tx // sw >= out_w:
                continue
            row = (b * out_h + ty // sh) * out_w + tx // sw
            for u in range(f):
                if not masked or relu2[row, u] > 0:
                    acc += dy2[row, u] * w[di, dj, ch, u]
    dx[b, y, xx, ch] = acc


def _windows(x, w, stride, padding):
    kh, kw, _, _ = w.shape
    g = conv_geometry(x.shape[1], x.shape[2], kh, kw, stride, padding)
    return Windows(x, kh, kw, tuple(stride), g.pad_top, g.pad_left, g.out_h, g.out_w), g


def conv2d(x, w, b, stride, padding, relu):
    """Implicit-GEMM convolution (relu: max(., 0) in the epilogue)."""
    windows, g = _windows(x, w, stride, padding)
    y = matmul(windows, as_rows(w, w.shape[3]), bias=b, relu=relu)
    return reshaped(y, x.shape[0], g.out_h, g.out_w, w.shape[3])


def conv2d_grads(x, w, dy, stride, padding, need_dx, relu_output):
    """dx (None unless need_dx: one gather per input pixel), dW, db; relu_output masks dy."""
    f = w.shape[3]
    windows, g = _windows(x, w, stride, padding)
    dy2, relu2 = as_rows(dy, f), as_rows(relu_output, f)
    dw, db = weight_gradients(windows, dy2, relu2, w.shape)
    if not need_dx:
        return None, dw, db
    dx = empty_device(x.shape, x.dtype)
    run_kernel(_conv_input_gradient, dx.size, dy2, dy2 if relu2 is None else relu2,
            relu2 is not None, w, dx, stride[0], stride[1], g.pad_top, g.pad_left, g.out_h,
            g.out_w)
    return dx, dw, db


