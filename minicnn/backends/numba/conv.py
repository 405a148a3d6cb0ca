"""im2col convolution, per chunk of images: each thread builds its rows of the window
matrix, multiplies them by the kernel with BLAS (blas.matmul, single-threaded inside the JIT)
and adds the bias (forward), or adds its windows back into its images (backward): the
reference conv.py, with one thread pool doing every step."""

from __future__ import annotations

from numba import njit, prange

from .blas import matmul
from .chunks import add_bias, chunk_rows, output_gradient_rows
from .jit import JIT


@njit(**JIT)
def _im2col_images(x, lo, hi, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w, cols):
    """Rows of images lo..hi: cols[(n, i, j), (di, dj, c)] = x[n, i*sh+di-pt, j*sw+dj-pl, c]."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    for b in range(lo, hi):
        for i in range(out_h):
            for j in range(out_w):
                row = (b * out_h + i) * out_w + j
                for di in range(kh):
                    y = i * sh + di - pad_top
                    for dj in range(kw):
                        xx = j * sw + dj - pad_left
                        base = (di * kw + dj) * c
                        if 0 <= y < h and 0 <= xx < w:
                            for ch in range(c):  # contiguous in both arrays
                                cols[row, base + ch] = x[b, y, xx, ch]
                        else:
                            for ch in range(c):
                                cols[row, base + ch] = 0.0


@njit(**JIT)
def _col2im_images(cols, lo, hi, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w, dx):
    """Images lo..hi of dx: the sum of the window entries that read each pixel."""
    h, w, c = dx.shape[1], dx.shape[2], dx.shape[3]
    for b in range(lo, hi):
        dx[b] = 0.0
        for i in range(out_h):
            for j in range(out_w):
                row = (b * out_h + i) * out_w + j
                for di in range(kh):
                    y = i * sh + di - pad_top
                    if y < 0 or y >= h:
                        continue
                    for dj in range(kw):
                        xx = j * sw + dj - pad_left
                        if xx < 0 or xx >= w:
                            continue
                        base = (di * kw + dj) * c
                        for ch in range(c):
                            dx[b, y, xx, ch] += cols[row, base + ch]


@njit(parallel=True, **JIT)
def conv_forward(x, w2, bias, relu, geometry, cols, y2, chunks):
    """Per chunk of images: im2col, y = cols @ W (BLAS), y += bias (then the ReLU).
    ``geometry``: (kh, kw, sh, sw, pad_top, pad_left, out_h, out_w)."""
    kh, kw, sh, sw, pad_top, pad_left, out_h, out_w = geometry
    n = x.shape[0]
    per_image = out_h * out_w
    for chunk in prange(chunks):
        lo, hi = chunk_rows(chunk, chunks, n)
        if lo >= hi:
            continue
        _im2col_images(x, lo, hi, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w, cols)
        r0, r1 = lo * per_image, hi * per_image
        matmul(cols[r0:r1], w2, y2[r0:r1])
        add_bias(y2, bias, relu, r0, r1)


@njit(parallel=True, **JIT)
def conv_backward(x, w2, dy2, relu, relu_out, masked, geometry, cols, dcols, grads, need_dx,
                  chunks):
    """Per chunk: dy through the ReLU and its bias sums, im2col, dW_chunk = cols^T dy,
    dcols = dy W^T, col2im into its images. ``grads``: (dw_parts, db_parts, dx)."""
    kh, kw, sh, sw, pad_top, pad_left, out_h, out_w = geometry
    dw_parts, db_parts, dx = grads[0], grads[1], grads[2]
    n = x.shape[0]
    per_image = out_h * out_w
    for chunk in prange(chunks):
        lo, hi = chunk_rows(chunk, chunks, n)
        r0, r1 = lo * per_image, hi * per_image
        g = output_gradient_rows(dy2, relu, relu_out, masked, r0, r1, db_parts[chunk])
        if lo >= hi:
            dw_parts[chunk] = 0.0
            continue
        _im2col_images(x, lo, hi, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w, cols)
        matmul(cols[r0:r1].T, g[r0:r1], dw_parts[chunk])
        if need_dx:
            matmul(g[r0:r1], w2.T, dcols[r0:r1])
            _col2im_images(dcols, lo, hi, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w, dx)


