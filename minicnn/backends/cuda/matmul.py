"""The tiled matrix product every product kernel is made of, with its bias and ReLU
epilogue and split-K.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np
from numba import cuda

from .launch import TILE, jit_kernel, part_view, reshaped
from .memory import empty_device


@functools.cache
def _matmul_kernel(dtype: np.dtype):
    """The tiled kernel for one dtype (shared memory needs its type at compile time)."""
    from numba import from_dtype, int32

    nb_type = from_dtype(dtype)

    @cuda.jit(device=True)
    def load(x, mask, i, j, trans, masked):
        """op(x)[i, j], or 0 where ``masked`` and op(mask)[i, j] <= 0."""
        v = x[j, i] if trans else x[i, j]
        if masked and (mask[j, i] if trans else mask[i, j]) <= 0:
            return nb_type(0)
        return v

    @cuda.jit(device=True)
    def load_a(a, windows, x, geometry, mask, i, j, trans, masked):
        """op(a)[i, j], where a may be the im2col matrix of x, read on the fly."""
        if not windows:
            return load(a, mask, i, j, trans, masked)
        r, k = (j, i) if trans else (i, j)
        return _window_entry(x, r, k, geometry)

    @jit_kernel("void({t}[:, ::1], {t}[:, ::1], {t}[:, :, ::1], {t}[:, ::1], int32[::1], int64, "
                "{t}[::1], {t}[:, ::1], {t}[:, ::1], {t}[:, :, :, ::1], UniTuple(int64, 7), "
                "UniTuple(boolean, 8))")
    def matmul(a, b, out, c, tickets, k_chunk, bias, mask_a, mask_b, x, geometry, flags):
        """out[z] (M, N) = op(a)[:, K_z] @ op(b)[K_z, :] over the z-th chunk of the K axis.
        ``flags``: (trans_a, trans_b, has_bias, relu, masked_a, masked_b, ones_row, windows).

        op = transpose when trans_* is set. With one chunk, out[0] is the whole product,
        plus ``bias`` (N,) on every row when ``has_bias``, then max(., 0) when ``relu``
        (the layer's bias and ReLU, fused into the product's epilogue). ``masked_*``:
        entries of a or b whose ``mask_*`` entry is <= 0 load as 0 (a fused ReLU's
        backward). ``ones_row``: op(a) has an extra last row of ones (row M-1 of out).
        ``windows``: a is the im2col matrix of the images x (geometry: kw, sh, sw,
        pad_top, pad_left, out_h, out_w), gathered as it is loaded (implicit GEMM).

        Split K (several chunks): each block writes its partial product to out[z]; the last
        block of a tile to finish (counted in ``tickets``, which it resets to 0) adds the
        partials in z order into c (deterministic) and applies the epilogue there.
        """
        trans_a, trans_b, has_bias, relu, masked_a, masked_b, ones_row, windows = flags
        a_tile = cuda.shared.array((TILE, TILE), nb_type)
        b_tile = cuda.shared.array((TILE, TILE), nb_type)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        row = cuda.blockIdx.y * TILE + ty
        col = cuda.blockIdx.x * TILE + tx
        z = cuda.blockIdx.z
        m, n = out.shape[1], out.shape[2]
        k_total = b.shape[1] if trans_b else b.shape[0]
        k_start = z * k_chunk
        k_stop = min(k_start + k_chunk, k_total)
        acc = nb_type(0)
        for t0 in range(k_start, k_stop, TILE):
            k = t0 + tx  # this thread loads op(a)[row, k] ...
            if row < m and k < k_stop:
                if ones_row and row == m - 1:
                    a_tile[ty, tx] = 1
                else:
                    a_tile[ty, tx] = load_a(a, windows, x, geometry, mask_a, row, k, trans_a,
                                            masked_a)
            else:
                a_tile[ty, tx] = 0
            k = t0 + ty  # ... and op(b)[k, col]
            if col < n and k < k_stop:
                b_tile[ty, tx] = load(b, mask_b, k, col, trans_b, masked_b)
            else:
                b_tile[ty, tx] = 0
            cuda.syncthreads()
            for kk in range(TILE):
                acc += a_tile[ty, kk] * b_tile[kk, tx]
            cuda.syncthreads()
        chunks = cuda.gridDim.z
        if chunks == 1:
            if row < m and col < n:
                c[row, col] = _epilogue(acc, bias, col, has_bias, relu)
            return
        if row < m and col < n:
            out[z, row, col] = acc
        cuda.threadfence()  # this block's partial is visible before its ticket is taken
        cuda.syncthreads()
        last = cuda.shared.array(1, int32)
        tile = cuda.blockIdx.y * cuda.gridDim.x + cuda.blockIdx.x
        if tx == 0 and ty == 0:
            last[0] = 1 if cuda.atomic.add(tickets, tile, 1) == chunks - 1 else 0
        cuda.syncthreads()
        if last[0]:
            if row < m and col < n:
                total = out[0, row, col]
                for zz in range(1, chunks):
                    total += out[zz, row, col]
                c[row, col] = _epilogue(total, bias, col, has_bias, relu)
            if tx == 0 and ty == 0:
                tickets[tile] = 0

    return matmul


@cuda.jit(device=True)
def _epilogue(value, bias, col, has_bias, relu):
    """A product's entry + the bias of its column, then the ReLU when asked."""
    if has_bias:
        value += bias[col]
    return 0 if relu and value < 0 else value


_tickets = []  # [zeroed int32 device array]: the split-K tile counters, grown on demand


def _split_tickets(tiles: int):
    """Per-tile counters of the split-K kernels, all 0 between launches (each last block
    resets its own). Made once (and again only when a product has more tiles)."""
    if not _tickets or _tickets[0].size < tiles:
        _tickets[:] = [cuda.to_device(np.zeros(max(tiles, 1024), dtype=np.int32))]
    return _tickets[0]


TARGET_BLOCKS = 256  # enough blocks to fill a large GPU (an H100 has 132 SMs)


def matmul(a, b, trans_a: bool = False, trans_b: bool = False, bias=None, relu: bool = False,
           mask_a=None, mask_b=None, ones_row: bool = False):
    """op(a) @ op(b) (+ bias on every row, then max(., 0) if relu) on the device.

    ``mask_a`` / ``mask_b`` (shaped like a / b): entries whose mask is <= 0 count as 0 --
    the backward of a fused ReLU (mask = its output), applied as the operand is loaded.
    ``ones_row``: op(a) gets an extra row of ones, so the result gets an extra last row,
    the column sums of op(b): a layer's bias gradient from its weight-gradient product.

    A product with a small output but a long K axis (the kernel gradients: few filters,
    many pixels) would give too few blocks to fill the GPU, so K is split into chunks
    computed by separate blocks and summed by the last of them (split-K, one launch).
    """
    windows = isinstance(a, Windows)
    m = (a.shape[1] if trans_a else a.shape[0]) + (1 if ones_row else 0)
    n = b.shape[0] if trans_b else b.shape[1]
    k = a.shape[0] if trans_a else a.shape[1]
    c = empty_device((m, n), a.dtype)
    tiles = math.ceil(n / TILE) * math.ceil(m / TILE)
    splits = max(1, min(TARGET_BLOCKS // tiles, k // (8 * TILE)))
    k_chunk = math.ceil(k / splits / TILE) * TILE
    splits = math.ceil(k / k_chunk)
    out = reshaped(c, 1, m, n) if splits == 1 else empty_device((splits, m, n), a.dtype)
    blocks = (math.ceil(n / TILE), math.ceil(m / TILE), splits)
    has_bias = bias is not None
    bias = bias if has_bias else part_view(c, 0)  # a placeholder the kernel never reads
    # Placeholders of the right types for the arguments this product does not use:
    matrix = part_view(out, 0) if windows else a
    images, geometry = (a.x, a.geometry) if windows else (reshaped(out, 1, *out.shape),
                                                          (0,) * 7)
    flags = (bool(trans_a), bool(trans_b), has_bias, bool(relu), mask_a is not None,
             mask_b is not None, bool(ones_row), windows)
    _matmul_kernel(np.dtype(a.dtype))[blocks, (TILE, TILE)](
        matrix, b, out, c, _split_tickets(blocks[0] * blocks[1]), k_chunk, bias,
        matrix if mask_a is None else mask_a, b if mask_b is None else mask_b, images,
        geometry, flags)
    return c


class Windows(NamedTuple):
    """The im2col matrix of a convolution's input, (N*OH*OW, kh*kw*C), never built: the
    matrix product reads its entries straight from the images (implicit GEMM)."""

    x: object  # (N, H, W, C) device images
    kh: int
    kw: int
    stride: tuple
    pad_top: int
    pad_left: int
    out_h: int
    out_w: int

    @property
    def shape(self) -> tuple[int, int]:
        n, _, _, c = self.x.shape
        return n * self.out_h * self.out_w, self.kh * self.kw * c

    @property
    def dtype(self):
        return self.x.dtype

    @property
    def geometry(self) -> tuple:
        return (self.kw, self.stride[0], self.stride[1], self.pad_top, self.pad_left, self.out_h,
                self.out_w)


@cuda.jit(device=True)
def _window_entry(x, r, k, geometry):
    """cols[r, k] of im2col(x): row r = (n, i, j), column k = (di, dj, c); 0 off the image."""
    kw, sh, sw, pad_top, pad_left, out_h, out_w = geometry
    c = x.shape[3]
    b, ij = r // (out_h * out_w), r % (out_h * out_w)
    tap = k // c
    y = (ij // out_w) * sh + tap // kw - pad_top
    xx = (ij % out_w) * sw + tap % kw - pad_left
    if 0 <= y < x.shape[1] and 0 <= xx < x.shape[2]:
        return x[b, y, xx, k % c]
    return x[0, 0, 0, 0] * 0


def weight_gradients(inputs, dy2, relu2, kernel_shape):
    """dW (kernel_shape) and db from one product: [inputs | 1]^T (dy through the ReLU)."""
    grads = matmul(inputs, dy2, trans_a=True, mask_b=relu2, ones_row=True)
    k = grads.shape[0] - 1
    return reshaped(part_view(grads, slice(0, k)), *kernel_shape), part_view(grads, k)
