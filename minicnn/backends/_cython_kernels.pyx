# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""Cython kernels: the reference's im2col/col2im, pooling and element-wise passes,
compiled, typed for float32 and float64 (the fused type ``real``) and parallel with
OpenMP (prange). Convolutions and dense layers cut the batch into one chunk per thread;
each thread builds its rows of the window matrix and multiplies them by calling BLAS
directly (scipy.linalg.cython_blas, single-threaded), so one OpenMP pool does all the
work. See cython_backend.py for the measurements behind that choice.
"""

import numpy as np

from cython.parallel cimport prange
from libc.float cimport DBL_MIN, FLT_MIN
from libc.math cimport INFINITY, erf, exp, expm1, fabs, log, sqrt, tanh
from libc.stdlib cimport free, malloc
from scipy.linalg.cython_blas cimport dgemm, sgemm

ctypedef fused real:
    float
    double

ctypedef fused offset:  # max-pooling's window offsets (chunked._offset_dtype)
    signed char
    long long


cdef void gemm(real* a, real* b, real* c, int m, int n, int k, bint trans_a,
               bint trans_b, bint accumulate=False, int a_stride=0) noexcept nogil:
    """Row-major C (m, n) = op(A) (m, k) @ op(B) (k, n), op = transpose where asked (with
    accumulate: C += op(A) op(B)); A's rows are a_stride apart when given (a block of
    columns of a wider matrix), else packed.

    BLAS is column-major, where a row-major C is C^T: so it computes C^T = op(B)^T op(A)^T.
    """
    cdef char ta = b'T' if trans_b else b'N'
    cdef char tb = b'T' if trans_a else b'N'
    cdef int ldb = k if trans_b else n
    cdef int lda = a_stride if a_stride else (m if trans_a else k)
    cdef real one = 1
    cdef real beta = 1 if accumulate else 0
    if real is float:
        sgemm(&ta, &tb, &n, &m, &k, &one, b, &ldb, a, &lda, &beta, c, &n)
    else:
        dgemm(&ta, &tb, &n, &m, &k, &one, b, &ldb, a, &lda, &beta, c, &n)


cdef void im2col_images(real[:, :, :, ::1] x, Py_ssize_t lo, Py_ssize_t hi, int kh, int kw,
                        int sh, int sw, int pad_top, int pad_left, int out_h, int out_w,
                        real[:, ::1] cols) noexcept nogil:
    """Rows of images lo..hi: cols[(n, i, j), (di, dj, c)] = x[n, i*sh+di-pt, j*sw+dj-pl, c]."""
    cdef Py_ssize_t h = x.shape[1], w = x.shape[2], c = x.shape[3]
    cdef Py_ssize_t b, i, j, di, dj, ch, row, base, y, xx
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
                            for ch in range(c):
                                cols[row, base + ch] = x[b, y, xx, ch]
                        else:
                            for ch in range(c):
                                cols[row, base + ch] = 0


cdef void col2im_images(real[:, ::1] cols, Py_ssize_t lo, Py_ssize_t hi, int kh, int kw, int sh,
                        int sw, int pad_top, int pad_left, int out_h, int out_w,
                        real[:, :, :, ::1] dx) noexcept nogil:
    """Images lo..hi of dx: the sum of the window entries that read each pixel."""
    cdef Py_ssize_t h = dx.shape[1], w = dx.shape[2], c = dx.shape[3]
    cdef Py_ssize_t b, i, j, di, dj, ch, row, base, y, xx
    for b in range(lo, hi):
        for y in range(h):
            for xx in range(w):
                for ch in range(c):
                    dx[b, y, xx, ch] = 0
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


cdef void add_bias(real* y, real[::1] bias, bint relu, Py_ssize_t rows) noexcept nogil:
    """The rows (rows, F) at y += bias, then max(., 0) when relu (the fused epilogue: one
    pass)."""
    cdef Py_ssize_t r, f, width = bias.shape[0]
    cdef real v
    for r in range(rows):
        for f in range(width):
            v = y[r * width + f] + bias[f]
            y[r * width + f] = 0 if relu and v < 0 else v  # (NaN stays NaN, as in the reference)


cdef real* output_gradient_rows(real[:, ::1] dy2, bint relu, real[:, ::1] relu_out,
                                real[:, ::1] masked, Py_ssize_t r0, Py_ssize_t r1,
                                double[::1] db) noexcept nogil:
    """Rows r0..r1 of the gradient before the fused ReLU: masked = dy where relu_out > 0,
    else 0 (when relu; else dy is used as it is), and db = their column sums (double).
    Returns where row 0 of that gradient lives."""
    cdef Py_ssize_t r, f
    cdef real v
    for f in range(dy2.shape[1]):
        db[f] = 0
    for r in range(r0, r1):
        for f in range(dy2.shape[1]):
            v = dy2[r, f]
            if relu:
                v = v * (relu_out[r, f] > 0)
                masked[r, f] = v
            db[f] += v
    return &masked[0, 0] if relu else &dy2[0, 0]


def conv_forward(real[:, :, :, ::1] x, real[:, ::1] w2, real[::1] bias, bint relu, int kh,
                 int kw, int sh, int sw, int pad_top, int pad_left, int out_h, int out_w,
                 real[:, ::1] cols, real[:, ::1] y2, int chunks):
    """Per chunk of images (one per thread): im2col, y = cols @ W (BLAS), y += bias (then
    the ReLU)."""
    cdef Py_ssize_t n = x.shape[0], per_image = out_h * out_w, f = w2.shape[1]
    cdef Py_ssize_t step = (n + chunks - 1) // chunks
    cdef Py_ssize_t chunk, lo, hi
    for chunk in prange(chunks, nogil=True, schedule="static", num_threads=chunks):
        lo = chunk * step
        hi = min(n, lo + step)
        if lo < hi:
            im2col_images(x, lo, hi, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w, cols)
            gemm(&cols[lo * per_image, 0], &w2[0, 0], &y2[lo * per_image, 0],
                 (hi - lo) * per_image, f, cols.shape[1], False, False)
            add_bias(&y2[lo * per_image, 0], bias, relu, (hi - lo) * per_image)


def conv_backward(real[:, :, :, ::1] x, real[:, ::1] w2, real[:, ::1] dy2, bint relu,
                  real[:, ::1] relu_out, real[:, ::1] masked, int kh, int kw, int sh, int sw,
                  int pad_top, int pad_left, int out_h, int out_w, real[:, ::1] cols,
                  real[:, ::1] dcols, real[:, :, ::1] dw_parts, double[:, ::1] db_parts,
                  real[:, :, :, ::1] dx, bint need_dx, int chunks):
    """Per chunk: dy through the ReLU and its bias sums, im2col, dW_chunk = cols^T dy,
    dcols = dy W^T (BLAS), col2im."""
    cdef Py_ssize_t n = x.shape[0], per_image = out_h * out_w, f = w2.shape[1]
    cdef Py_ssize_t k = cols.shape[1], step = (n + chunks - 1) // chunks
    cdef Py_ssize_t chunk, lo, hi, i, j
    cdef real* g
    for chunk in prange(chunks, nogil=True, schedule="static", num_threads=chunks):
        lo = chunk * step
        hi = min(n, lo + step)
        g = output_gradient_rows(dy2, relu, relu_out, masked, lo * per_image,
                                 hi * per_image, db_parts[chunk])
        if lo < hi:
            im2col_images(x, lo, hi, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w, cols)
            gemm(&cols[lo * per_image, 0], g + lo * per_image * f, &dw_parts[chunk, 0, 0],
                 k, f, (hi - lo) * per_image, True, False)
            if need_dx:
                gemm(g + lo * per_image * f, &w2[0, 0], &dcols[lo * per_image, 0],
                     (hi - lo) * per_image, k, f, False, True)
                col2im_images(dcols, lo, hi, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w,
                              dx)
        else:
            for i in range(k):
                for j in range(f):
                    dw_parts[chunk, i, j] = 0


# One input channel (a first layer): numba_cpu.py's plane kernels. One image at a time: a
# zero-padded plane, its windows tap-major X (taps, pixels), a product per image.


cdef object planes(x, int count, int kh, int kw, int sh, int sw, int pad_top, int pad_left,
                   int out_h, int out_w):
    """count zeroed (rows, cols) planes, each big enough for one image of x (N, H, W, 1) at
    (pad_top, pad_left) and every tap the output reads."""
    rows = max((out_h - 1) * sh + kh, x.shape[1] + pad_top)
    cols = max((out_w - 1) * sw + kw, x.shape[2] + pad_left)
    return np.zeros((count, rows, cols), dtype=np.asarray(x).dtype)


cdef void pad_image(real[:, :, :, ::1] x, Py_ssize_t b, int pad_top, int pad_left,
                    real[:, ::1] plane) noexcept nogil:
    """plane[pad_top + y, pad_left + x] = x[b, y, x, 0] (the padding stays zero)."""
    cdef Py_ssize_t yy, xx
    for yy in range(x.shape[1]):
        for xx in range(x.shape[2]):
            plane[pad_top + yy, pad_left + xx] = x[b, yy, xx, 0]


cdef void plane_windows(real[:, ::1] plane, int kh, int kw, int sh, int sw, int out_h,
                        int out_w, real[:, ::1] xt) noexcept nogil:
    """xt[di*kw + dj, i*out_w + j] = plane[i*sh + di, j*sw + dj]: an image's windows, tap-major."""
    cdef Py_ssize_t di, dj, i, j
    cdef real* src
    cdef real* dst
    for di in range(kh):
        for dj in range(kw):
            for i in range(out_h):
                src = &plane[i * sh + di, dj]
                dst = &xt[di * kw + dj, i * out_w]
                if sw == 1:  # contiguous: a vectorised copy
                    for j in range(out_w):
                        dst[j] = src[j]
                else:
                    for j in range(out_w):
                        dst[j] = src[j * sw]


cdef void plane_col2im(real[:, ::1] dxt, int kh, int kw, int sh, int sw, int out_h, int out_w,
                       real[:, ::1] dplane) noexcept nogil:
    """dplane = the sum of the window entries dxt (taps, pixels) that read each point."""
    cdef Py_ssize_t di, dj, i, j
    cdef real* src
    cdef real* dst
    dplane[:, :] = 0
    for di in range(kh):
        for dj in range(kw):
            for i in range(out_h):
                src = &dxt[di * kw + dj, i * out_w]
                dst = &dplane[i * sh + di, dj]
                for j in range(out_w):
                    dst[j * sw] += src[j]


def plane_conv_forward(real[:, :, :, ::1] x, real[:, ::1] w2, real[::1] bias, bint relu, int kh,
                       int kw, int sh, int sw, int pad_top, int pad_left, int out_h, int out_w,
                       int pool_h, int pool_w, real[:, :, :, ::1] y, offset[:, :, :, ::1] arg,
                       int chunks):
    """Per image: its windows X (taps, pixels), z = X^T W (BLAS) + bias (then the ReLU) into
    its rows of y (N, out_h, out_w, F); or with a pool (pool_h > 0), into a buffer that
    max-pooling reads while it is in cache: y (N, out_h // pool_h, out_w // pool_w, F) and
    arg are the pooled output."""
    cdef Py_ssize_t n = x.shape[0], per_image = out_h * out_w, f = w2.shape[1]
    cdef Py_ssize_t step = (n + chunks - 1) // chunks
    cdef Py_ssize_t chunk, lo, hi, b
    dtype = np.asarray(x).dtype
    cdef real[:, :, ::1] plane = planes(x, chunks, kh, kw, sh, sw, pad_top, pad_left, out_h,
                                        out_w)
    cdef real[:, :, ::1] xt = np.empty((chunks, kh * kw, per_image), dtype=dtype)
    cdef real[:, :, ::1] z = np.empty((chunks if pool_h else 1, per_image, f), dtype=dtype)
    for chunk in prange(chunks, nogil=True, schedule="static", num_threads=chunks):
        lo = chunk * step
        hi = min(n, lo + step)
        for b in range(lo, hi):
            pad_image(x, b, pad_top, pad_left, plane[chunk])
            plane_windows(plane[chunk], kh, kw, sh, sw, out_h, out_w, xt[chunk])
            if pool_h:
                gemm(&xt[chunk, 0, 0], &w2[0, 0], &z[chunk, 0, 0], per_image, f, kh * kw, True,
                     False)
                pool_rows(&z[chunk, 0, 0], bias, relu, out_w, pool_h, pool_w, y, arg, b)
            else:
                gemm(&xt[chunk, 0, 0], &w2[0, 0], &y[b, 0, 0, 0], per_image, f, kh * kw, True,
                     False)
                add_bias(&y[b, 0, 0, 0], bias, relu, per_image)


# A convolution's output max-pooled as it is made (pool-sized windows, 'valid'; Sequential
# fuses a Conv2D and the MaxPool2D after it): a window's pixels k = 0, 1, ... (offset
# di * pool_w + dj) lie at base + step[k] in the kernel's buffer, channels contiguous.


cdef void pool_window(real* base, Py_ssize_t* step, int count, real[::1] bias, real floor,
                      real* best, offset* winner) noexcept nogil:
    """best, winner = the max over the window's pixels + bias, floored (the ReLU: floor 0,
    else -inf), and the pixel it came from (``keep_max``); channels in blocks whose offsets
    stay C ints until the end."""
    cdef Py_ssize_t f = bias.shape[0], ch, first = 0, width
    cdef int k
    cdef int where[CHANNEL_BLOCK]
    cdef real value
    cdef real* source
    while first < f:
        width = min(CHANNEL_BLOCK, f - first)
        for k in range(count):
            source = base + step[k] + first
            for ch in range(width):
                value = source[ch] + bias[first + ch]
                value = floor if value < floor else value  # (NaN stays)
                if k == 0:
                    best[first + ch], where[ch] = value, 0
                else:
                    keep_max(value, k, best + first, where, ch)
        narrow(where, winner + first, width)
        first = first + CHANNEL_BLOCK


cdef void send_to_winner(real* base, Py_ssize_t* step, int count, real* dy, real* pooled,
                         offset* winner, bint relu, Py_ssize_t f) noexcept nogil:
    """The window's pixels' gradients: dy where the pixel won and (with the ReLU) the pooled
    output is > 0, else 0."""
    cdef Py_ssize_t ch
    cdef int k
    cdef real value
    cdef real* target
    cdef bint keep
    for k in range(count):
        target = base + step[k]
        for ch in range(f):
            value = dy[ch]
            keep = (winner[ch] == k) & ((pooled[ch] > 0) | (not relu))
            target[ch] = value if keep else 0


cdef Py_ssize_t* window_steps(int pool_h, int pool_w, Py_ssize_t row_step,
                              Py_ssize_t col_step) noexcept nogil:
    """step[k] for a buffer whose rows are row_step and columns col_step apart (free it)."""
    cdef Py_ssize_t* step = <Py_ssize_t*> malloc(pool_h * pool_w * sizeof(Py_ssize_t))
    cdef int k
    for k in range(pool_h * pool_w):
        step[k] = (k // pool_w) * row_step + (k % pool_w) * col_step
    return step


cdef void pool_rows(real* z, real[::1] bias, bint relu, int out_w, int pool_h, int pool_w,
                    real[:, :, :, ::1] y, offset[:, :, :, ::1] arg, Py_ssize_t b) noexcept nogil:
    """y[b], arg[b] = the max-pooling of an image's rows z (out_h * out_w, F) + bias (then
    the ReLU)."""
    cdef Py_ssize_t f = y.shape[3], i, j
    cdef Py_ssize_t* step = window_steps(pool_h, pool_w, out_w * f, f)
    for i in range(y.shape[1]):
        for j in range(y.shape[2]):
            pool_window(z + (i * pool_h * out_w + j * pool_w) * f, step, pool_h * pool_w, bias,
                        0 if relu else -INFINITY, &y[b, i, j, 0], &arg[b, i, j, 0])
    free(step)


cdef void unpool_gradient(real[:, :, :, ::1] dy, real[:, :, :, ::1] pooled,
                          offset[:, :, :, ::1] arg, Py_ssize_t b, bint relu, int pool_h,
                          int pool_w, real* g, int out_h, int out_w) noexcept nogil:
    """g (out_h * out_w, F) = image b's gradient before the pooling and the ReLU: dy at each
    window's winner (``send_to_winner``), 0 everywhere else."""
    cdef Py_ssize_t f = dy.shape[3], i, j
    cdef Py_ssize_t* step = window_steps(pool_h, pool_w, out_w * f, f)
    if out_h % pool_h or out_w % pool_w:
        for i in range(out_h * out_w * f):  # rows or columns no window covers
            g[i] = 0
    for i in range(dy.shape[1]):
        for j in range(dy.shape[2]):
            send_to_winner(g + (i * pool_h * out_w + j * pool_w) * f, step, pool_h * pool_w,
                           &dy[b, i, j, 0], &pooled[b, i, j, 0], &arg[b, i, j, 0], relu, f)
    free(step)


cdef void plane_backward_chunk(real[:, :, :, ::1] x, real[:, ::1] w2, real[:, :, :, ::1] dy,
                               bint relu, real[:, :, :, ::1] relu_out, offset[:, :, :, ::1] arg,
                               int kh, int kw, int sh, int sw, int pad_top, int pad_left,
                               int out_h, int out_w, int pool_h, int pool_w,
                               real[:, ::1] plane, real[:, ::1] dplane, real[:, ::1] xt,
                               real[:, ::1] g, real[:, ::1] part, double[:, ::1] dw,
                               double[::1] db, real[:, :, :, ::1] dx, bint need_dx,
                               Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """Images lo..hi: G = its dy (N, out_h, out_w, F) through the ReLU (relu_out: the
    forward's output) -- or with a pool, dy and relu_out pooled and sent back to the winners
    arg (``unpool_gradient``) -- its windows X with a row of ones below (xt: taps + 1 rows),
    [dW; db] += [X; 1] G (BLAS, then added in double); with need_dx, dX = W G^T (taps,
    pixels) added back into a padded plane whose inside is the image's dx."""
    cdef Py_ssize_t per_image = out_h * out_w, f = w2.shape[1], taps = kh * kw
    cdef Py_ssize_t b, r, u, t, yy, xx
    cdef real* dyb
    cdef real* relu_b
    cdef real* gb = &g[0, 0]
    for b in range(lo, hi):
        if pool_h:
            unpool_gradient(dy, relu_out, arg, b, relu, pool_h, pool_w, gb, out_h, out_w)
        else:
            dyb = &dy[b, 0, 0, 0]  # pointers: GCC vectorises this loop, not memoryviews
            relu_b = &relu_out[b, 0, 0, 0] if relu else dyb
            for r in range(per_image * f):
                gb[r] = dyb[r] * (relu_b[r] > 0) if relu else dyb[r]
        pad_image(x, b, pad_top, pad_left, plane)
        plane_windows(plane, kh, kw, sh, sw, out_h, out_w, xt)
        gemm(&xt[0, 0], &g[0, 0], &part[0, 0], taps + 1, f, per_image, False, False)
        for t in range(taps):
            for u in range(f):
                dw[t, u] += part[t, u]
        for u in range(f):
            db[u] += part[taps, u]
        if need_dx:
            gemm(&w2[0, 0], &g[0, 0], &xt[0, 0], taps, per_image, f, False, True)
            plane_col2im(xt, kh, kw, sh, sw, out_h, out_w, dplane)
            for yy in range(x.shape[1]):
                for xx in range(x.shape[2]):
                    dx[b, yy, xx, 0] = dplane[pad_top + yy, pad_left + xx]


def plane_conv_backward(real[:, :, :, ::1] x, real[:, ::1] w2, real[:, :, :, ::1] dy, bint relu,
                        real[:, :, :, ::1] relu_out, offset[:, :, :, ::1] arg, int kh, int kw,
                        int sh, int sw, int pad_top, int pad_left, int out_h, int out_w,
                        int pool_h, int pool_w, real[:, :, ::1] dw_parts,
                        double[:, ::1] db_parts, real[:, :, :, ::1] dx, bint need_dx,
                        int chunks):
    """Per chunk of images (one per thread): ``plane_backward_chunk`` into its own
    dw_parts[chunk] and db_parts[chunk] (zeros for an empty chunk)."""
    cdef Py_ssize_t n = x.shape[0], per_image = out_h * out_w, f = w2.shape[1]
    cdef Py_ssize_t step = (n + chunks - 1) // chunks, taps = kh * kw
    cdef Py_ssize_t chunk, lo, hi, t, u
    dtype = np.asarray(x).dtype
    cdef real[:, :, ::1] plane = planes(x, 2 * chunks, kh, kw, sh, sw, pad_top, pad_left,
                                        out_h, out_w)
    cdef real[:, :, ::1] xt = np.ones((chunks, taps + 1, per_image), dtype=dtype)
    cdef real[:, :, ::1] g = np.empty((chunks, per_image, f), dtype=dtype)
    cdef real[:, :, ::1] part = np.empty((chunks, taps + 1, f), dtype=dtype)
    cdef double[:, :, ::1] dw = np.zeros((chunks, taps, f))
    db_parts[:] = 0
    for chunk in prange(chunks, nogil=True, schedule="static", num_threads=chunks):
        lo = chunk * step
        hi = min(n, lo + step)
        plane_backward_chunk(x, w2, dy, relu, relu_out, arg, kh, kw, sh, sw, pad_top, pad_left,
                             out_h, out_w, pool_h, pool_w, plane[2 * chunk],
                             plane[2 * chunk + 1], xt[chunk], g[chunk], part[chunk], dw[chunk],
                             db_parts[chunk], dx, need_dx, lo, hi)
        for t in range(taps):
            for u in range(f):
                dw_parts[chunk, t, u] = <real> dw[chunk, t, u]


def dense_forward(real[:, ::1] x, real[:, ::1] w, real[::1] bias, bint relu, real[:, ::1] y,
                  int chunks):
    """Per chunk of rows: y = x W (BLAS) + bias (then the ReLU)."""
    cdef Py_ssize_t n = x.shape[0], step = (n + chunks - 1) // chunks
    cdef Py_ssize_t chunk, lo, hi
    for chunk in prange(chunks, nogil=True, schedule="static", num_threads=chunks):
        lo = chunk * step
        hi = min(n, lo + step)
        if lo < hi:
            gemm(&x[lo, 0], &w[0, 0], &y[lo, 0], hi - lo, w.shape[1], w.shape[0], False, False)
            add_bias(&y[lo, 0], bias, relu, hi - lo)


def dense_backward(real[:, ::1] x, real[:, ::1] w, real[:, ::1] dy, bint relu,
                   real[:, ::1] relu_out, real[:, ::1] masked, real[:, ::1] dx,
                   real[:, ::1] dw, double[:, ::1] db_parts, bint need_dx, int chunks):
    """Per chunk of rows: dy through the ReLU and its bias sums, dx = dy W^T; then per chunk
    of W's rows: dW[k0:k1] = x[:, k0:k1]^T dy (BLAS), so no thread's partial dW needs adding
    up."""
    cdef Py_ssize_t n = x.shape[0], step = (n + chunks - 1) // chunks, u = w.shape[1]
    cdef Py_ssize_t k = x.shape[1], k_step = (k + chunks - 1) // chunks
    cdef Py_ssize_t chunk, lo, hi, k0, k1
    cdef real* g = &masked[0, 0] if relu else &dy[0, 0]
    for chunk in prange(chunks, nogil=True, schedule="static", num_threads=chunks):
        lo = chunk * step
        hi = min(n, lo + step)
        output_gradient_rows(dy, relu, relu_out, masked, lo, hi, db_parts[chunk])
        if need_dx and lo < hi:
            gemm(g + lo * u, &w[0, 0], &dx[lo, 0], hi - lo, k, u, False, True)
    for chunk in prange(chunks, nogil=True, schedule="static", num_threads=chunks):
        k0 = chunk * k_step
        k1 = min(k, k0 + k_step)
        if k0 < k1:
            gemm(&x[0, k0], g, &dw[k0, 0], k1 - k0, u, n, True, False, False, k)


# Pooling window (i, j) starts at (i*sh - pad_top, j*sw - pad_left) and is clipped to the
# image: the same as -inf padding (max) or padding left out of the mean (average).


cdef enum:
    CHANNEL_BLOCK = 64  # channels max-pooling's forward takes at a time (its offsets' buffer)


cdef inline void keep_max(real value, int k, real* best, int* where, Py_ssize_t ch) noexcept nogil:
    """best[ch], where[ch] = value, k if value beats best[ch] (first max wins; a NaN beats
    every number, as in np.argmax). No branch: GCC vectorises the loops that call it."""
    cdef real current = best[ch]
    cdef bint better = (value > current) | ((value != value) & (current == current))
    best[ch] = value if better else current
    where[ch] = k if better else where[ch]


cdef inline void narrow(int* where, offset* arg, Py_ssize_t width) noexcept nogil:
    """arg[:width] = where[:width]: a block's winners, kept as C ints while they are chosen
    (then the select is as wide as a float and GCC vectorises it; with arg's int8 it did
    not), narrowed at the end."""
    cdef Py_ssize_t ch
    for ch in range(width):
        arg[ch] = <offset> where[ch]


cdef void maxpool_image(real[:, :, :, ::1] x, Py_ssize_t b, int ph, int pw, int sh, int sw,
                        int pad_top, int pad_left, real[:, :, :, ::1] y,
                        offset[:, :, :, ::1] arg) noexcept nogil:
    """Image b: y = window max, arg = its offset (first max wins; a NaN beats every number,
    as in np.argmax). One pass over each window, channels innermost, through pointers; the
    offsets are kept as C ints in ``where`` (then the select is as wide as a float and GCC
    vectorises it; with arg's int8 it did not) and narrowed into arg at the end."""
    cdef Py_ssize_t out_h = y.shape[1], out_w = y.shape[2], c = y.shape[3]
    cdef Py_ssize_t i, j, ch, r, q, top, left, r0, r1, c0, c1, first, width
    cdef int k
    cdef int where[CHANNEL_BLOCK]
    cdef bint better
    cdef real value, current
    cdef real* best
    cdef real* pixel
    cdef offset* winner
    for i in range(out_h):
        top = i * sh - pad_top
        r0, r1 = max(top, 0), min(top + ph, x.shape[1])
        for j in range(out_w):
            left = j * sw - pad_left
            c0, c1 = max(left, 0), min(left + pw, x.shape[2])
            first = 0
            while first < c:  # (range() with a variable step needs the GIL)
                width = min(CHANNEL_BLOCK, c - first)
                best, pixel = &y[b, i, j, first], &x[b, r0, c0, first]
                k = (r0 - top) * pw + c0 - left
                for ch in range(width):
                    best[ch] = pixel[ch]
                    where[ch] = k
                for r in range(r0, r1):
                    for q in range(c0, c1):
                        pixel = &x[b, r, q, first]
                        k = (r - top) * pw + q - left
                        for ch in range(width):
                            keep_max(pixel[ch], k, best, where, ch)
                narrow(where, &arg[b, i, j, first], width)
                first = first + CHANNEL_BLOCK


def maxpool_forward(real[:, :, :, ::1] x, int ph, int pw, int sh, int sw, int pad_top,
                    int pad_left, real[:, :, :, ::1] y, offset[:, :, :, ::1] arg):
    """y = window max; arg = its offset di * pw + dj inside the window (first max wins),
    one image per iteration (``maxpool_image``; cnn_b's first pool: 0.37 -> 0.13 ms)."""
    cdef Py_ssize_t b
    for b in prange(y.shape[0], nogil=True, schedule="static"):
        maxpool_image(x, b, ph, pw, sh, sw, pad_top, pad_left, y, arg)


cdef inline void zero_image(real[:, :, :, ::1] a, Py_ssize_t b) noexcept nogil:
    """a[b] = 0 (the gradients that windows add into)."""
    cdef Py_ssize_t r, q, ch
    for r in range(a.shape[1]):
        for q in range(a.shape[2]):
            for ch in range(a.shape[3]):
                a[b, r, q, ch] = 0


cdef void maxpool_gather_image(real[:, :, :, ::1] dy, offset[:, :, :, ::1] arg, Py_ssize_t b,
                               int ph, int pw, int sh, int sw, int pad_top, int pad_left,
                               real[:, :, :, ::1] dx) noexcept nogil:
    """Image b's dx for windows that do not overlap: each pixel lies in at most one window
    and reads its gradient once (dy where it won, else 0)."""
    cdef Py_ssize_t out_h = dy.shape[1], out_w = dy.shape[2], c = dy.shape[3]
    cdef Py_ssize_t r, q, i, j, di, dj, ch
    cdef offset k
    cdef real value
    cdef real* target
    cdef real* source
    cdef offset* winner
    for r in range(dx.shape[1]):
        i, di = (r + pad_top) // sh, (r + pad_top) % sh
        for q in range(dx.shape[2]):
            j, dj = (q + pad_left) // sw, (q + pad_left) % sw
            target = &dx[b, r, q, 0]
            if di < ph and i < out_h and dj < pw and j < out_w:
                k = di * pw + dj
                source, winner = &dy[b, i, j, 0], &arg[b, i, j, 0]
                for ch in range(c):  # the load outside the select: GCC vectorises it
                    value = source[ch]
                    target[ch] = value if winner[ch] == k else 0
            else:
                for ch in range(c):
                    target[ch] = 0


def maxpool_backward(real[:, :, :, ::1] dy, offset[:, :, :, ::1] arg, int ph, int pw, int sh,
                     int sw, int pad_top, int pad_left, real[:, :, :, ::1] dx):
    """Each output gradient goes to the pixel that won its window: gathered per pixel where
    windows do not overlap (stride >= pool, the usual case: ``maxpool_gather_image``), else
    dx zeroed and each gradient added onto its winner. The winner's offset becomes a flat
    distance through a small table: two integer divisions per pixel had cost 60% of the time
    (cnn_b's first pool: 0.33 -> 0.135 ms)."""
    cdef Py_ssize_t n = dy.shape[0], out_h = dy.shape[1], out_w = dy.shape[2], c = dy.shape[3]
    cdef Py_ssize_t b, i, j, ch, k
    cdef Py_ssize_t pixel_step = dx.shape[2] * c  # flat distance between image rows
    cdef Py_ssize_t* offset = <Py_ssize_t*> malloc(ph * pw * sizeof(Py_ssize_t))
    cdef real* image
    cdef bint disjoint = sh >= ph and sw >= pw
    for k in range(ph * pw):  # the window offset k as a flat distance: no division per pixel
        offset[k] = (k // pw) * pixel_step + (k % pw) * c
    for b in prange(n, nogil=True, schedule="static"):
        if disjoint:
            maxpool_gather_image(dy, arg, b, ph, pw, sh, sw, pad_top, pad_left, dx)
            continue
        zero_image(dx, b)
        image = &dx[b, 0, 0, 0]
        for i in range(out_h):
            for j in range(out_w):
                for ch in range(c):
                    image[(i * sh - pad_top) * pixel_step + (j * sw - pad_left) * c + ch
                          + offset[arg[b, i, j, ch]]] += dy[b, i, j, ch]
    free(offset)


def avgpool_forward(real[:, :, :, ::1] x, int ph, int pw, int sh, int sw, int pad_top,
                    int pad_left, real[:, :, :, ::1] y):
    """y = the sum of the window's pixels inside the image / their count."""
    cdef Py_ssize_t n = y.shape[0], out_h = y.shape[1], out_w = y.shape[2], c = y.shape[3]
    cdef Py_ssize_t b, i, j, ch, r, q, r0, r1, c0, c1
    for b in prange(n, nogil=True, schedule="static"):
        for i in range(out_h):
            r0, r1 = max(i * sh - pad_top, 0), min(i * sh - pad_top + ph, x.shape[1])
            for j in range(out_w):
                c0, c1 = max(j * sw - pad_left, 0), min(j * sw - pad_left + pw, x.shape[2])
                for ch in range(c):
                    y[b, i, j, ch] = 0
                for r in range(r0, r1):
                    for q in range(c0, c1):
                        for ch in range(c):
                            y[b, i, j, ch] += x[b, r, q, ch]
                for ch in range(c):
                    y[b, i, j, ch] /= (r1 - r0) * (c1 - c0)


def avgpool_backward(real[:, :, :, ::1] dy, int ph, int pw, int sh, int sw, int pad_top,
                     int pad_left, real[:, :, :, ::1] dx):
    """Each window shares its gradient evenly among its pixels inside the image."""
    cdef Py_ssize_t n = dy.shape[0], out_h = dy.shape[1], out_w = dy.shape[2], c = dy.shape[3]
    cdef Py_ssize_t b, i, j, ch, r, q, r0, r1, c0, c1, count
    for b in prange(n, nogil=True, schedule="static"):
        zero_image(dx, b)
        for i in range(out_h):
            r0, r1 = max(i * sh - pad_top, 0), min(i * sh - pad_top + ph, dx.shape[1])
            for j in range(out_w):
                c0, c1 = max(j * sw - pad_left, 0), min(j * sw - pad_left + pw, dx.shape[2])
                count = (r1 - r0) * (c1 - c0)
                for r in range(r0, r1):
                    for q in range(c0, c1):
                        for ch in range(c):
                            dx[b, r, q, ch] += dy[b, i, j, ch] / count


# ----------------------------------------------------------------------------- element-wise
# One forward and one backward loop for every element-wise activation: the activation's
# index in ELEMENTWISE picks the formula (a loop-invariant branch the compiler hoists).

ELEMENTWISE = ("relu", "sigmoid", "tanh", "elu", "leaky_relu", "silu", "gelu")
cdef double SQRT_HALF = sqrt(0.5)
cdef double INV_SQRT_2PI = 1.0 / sqrt(2.0 * 3.141592653589793)


cdef inline real stable_sigmoid(real v) noexcept nogil:
    """1 / (1 + e^-v), computed from e^-|v| so it never overflows."""
    cdef real e
    if v >= 0:
        return 1.0 / (1.0 + exp(-v))
    e = exp(v)
    return e / (1.0 + e)


cdef inline real activate(int kind, real z, real slope) noexcept nogil:
    if kind == 0:
        return z if z > 0 else 0.0
    if kind == 1:
        return stable_sigmoid(z)
    if kind == 2:
        return tanh(z)
    if kind == 3:
        return z if z > 0 else expm1(z)
    if kind == 4:
        return z if z > 0 else slope * z
    if kind == 5:
        return z * stable_sigmoid(z)
    return z * 0.5 * (1.0 + erf(z * SQRT_HALF))


cdef inline real derivative(int kind, real z, real a, real slope) noexcept nogil:
    """f'(z), from whichever of z and a = f(z) gives the reference's formula."""
    cdef real s
    if kind == 0:
        return 1.0 if a > 0 else 0.0
    if kind == 1:
        return a * (1.0 - a)
    if kind == 2:
        return 1.0 - a * a
    if kind == 3:
        return 1.0 if z > 0 else a + 1.0
    if kind == 4:
        return 1.0 if z > 0 else slope
    if kind == 5:
        s = stable_sigmoid(z)
        return s * (1.0 + z * (1.0 - s))
    return 0.5 * (1.0 + erf(z * SQRT_HALF)) + z * INV_SQRT_2PI * exp(-0.5 * z * z)


def activation_forward(int kind, double slope, real[::1] z, real[::1] a):
    """a = f(z) for f = ELEMENTWISE[kind] (slope: leaky_relu's negative slope)."""
    cdef Py_ssize_t i
    cdef real s = <real>slope
    if kind == 0:  # ReLU, the hot path: a branch-free loop the compiler vectorises (15x)
        for i in prange(z.shape[0], nogil=True, schedule="static"):
            a[i] = z[i] if z[i] > 0 else 0
        return
    for i in prange(z.shape[0], nogil=True, schedule="static"):
        a[i] = activate(kind, z[i], s)


def activation_backward(int kind, double slope, real[::1] z, real[::1] a, real[::1] da,
                        real[::1] dz):
    """dz = da f'(z)."""
    cdef Py_ssize_t i
    cdef real s = <real>slope
    if kind == 0:  # ReLU, as above (a product, not a branch: the sign of a is random)
        for i in prange(z.shape[0], nogil=True, schedule="static"):
            dz[i] = da[i] * (a[i] > 0)
        return
    for i in prange(z.shape[0], nogil=True, schedule="static"):
        dz[i] = da[i] * derivative(kind, z[i], a[i], s)


def sum_parts(real[:, ::1] parts, real[::1] out):
    """out = parts[0] + parts[1] + ... (per-chunk weight gradients, added in a fixed order)."""
    cdef Py_ssize_t i, chunk
    cdef real total
    for i in prange(out.shape[0], nogil=True, schedule="static"):
        total = parts[0, i]
        for chunk in range(1, parts.shape[0]):
            total = total + parts[chunk, i]
        out[i] = total


def multiply(real[::1] a, real[::1] b, real[::1] out):
    cdef Py_ssize_t i
    for i in prange(a.shape[0], nogil=True, schedule="static"):
        out[i] = a[i] * b[i]


def adam(real[::1] p, real[::1] g, real[::1] m, real[::1] v, double lr_t, double beta_1,
         double beta_2, double epsilon):
    """m += (1-b1)(g - m); v += (1-b2)(g^2 - v) (both flushed to zero below the smallest
    normal float, as numpy_ref.flush_to_zero); p -= lr_t m / (sqrt(v) + eps), in the arrays'
    precision (as NumPy computes it: float32 SIMD lanes, twice as many as double)."""
    cdef Py_ssize_t i
    cdef real rate_m = 1 - beta_1, rate_v = 1 - beta_2, step = lr_t, eps = epsilon
    cdef real tiny = FLT_MIN if real is float else DBL_MIN
    cdef real mi, vi
    for i in prange(p.shape[0], nogil=True, schedule="static"):
        mi = m[i] + rate_m * (g[i] - m[i])
        vi = v[i] + rate_v * (g[i] * g[i] - v[i])
        m[i] = mi - mi if fabs(mi) < tiny else mi
        v[i] = vi - vi if fabs(vi) < tiny else vi
        p[i] -= step * m[i] / (sqrt(v[i]) + eps)


# ----------------------------------------------------------------------------- batch norm
# (M, C) rows, as in numba_cpu: per-chunk partial sums in double, then element-wise passes.


def column_sums(real[:, ::1] a, real[:, ::1] b, int chunks, double[:, :, ::1] parts):
    """parts[chunk, 0] = sum of a's rows, parts[chunk, 1] = sum of (a * b)'s rows."""
    cdef Py_ssize_t m = a.shape[0], c = a.shape[1], step = (m + chunks - 1) // chunks
    cdef Py_ssize_t chunk, r, k, lo, hi
    for chunk in prange(chunks, nogil=True, schedule="static", num_threads=chunks):
        lo = chunk * step
        hi = min(m, lo + step)
        for k in range(c):
            parts[chunk, 0, k] = 0
            parts[chunk, 1, k] = 0
        for r in range(lo, hi):
            for k in range(c):
                parts[chunk, 0, k] += a[r, k]
                parts[chunk, 1, k] += a[r, k] * b[r, k]


def centred_squares(real[:, ::1] x, real[::1] mean, int chunks, double[:, ::1] parts):
    """parts[chunk, k] = sum over the chunk's rows of (x - mean)^2."""
    cdef Py_ssize_t m = x.shape[0], c = x.shape[1], step = (m + chunks - 1) // chunks
    cdef Py_ssize_t chunk, r, k, lo, hi
    cdef double d
    for chunk in prange(chunks, nogil=True, schedule="static", num_threads=chunks):
        lo = chunk * step
        hi = min(m, lo + step)
        for k in range(c):
            parts[chunk, k] = 0
        for r in range(lo, hi):
            for k in range(c):
                d = x[r, k] - mean[k]
                parts[chunk, k] += d * d


def normalize(real[:, ::1] x, real[::1] mean, real[::1] scale, real[::1] gamma,
              real[::1] beta, real[:, ::1] x_hat, real[:, ::1] y):
    """x_hat = (x - mean) * scale; y = gamma x_hat + beta."""
    cdef Py_ssize_t r, k
    cdef real v
    for r in prange(x.shape[0], nogil=True, schedule="static"):
        for k in range(x.shape[1]):
            v = (x[r, k] - mean[k]) * scale[k]
            x_hat[r, k] = v
            y[r, k] = v * gamma[k] + beta[k]


def batchnorm_dx(real[:, ::1] x_hat, real[:, ::1] dy, real[::1] scale, real[::1] mean_dy,
                 real[::1] mean_dy_xhat, real[:, ::1] dx):
    """dx = scale (dy - mean(dy) - x_hat mean(dy x_hat))."""
    cdef Py_ssize_t r, k
    for r in prange(dy.shape[0], nogil=True, schedule="static"):
        for k in range(dy.shape[1]):
            dx[r, k] = scale[k] * (dy[r, k] - mean_dy[k] - x_hat[r, k] * mean_dy_xhat[k])


# ----------------------------------------------------------------------------- loss


def softmax_cross_entropy(real[:, ::1] z, real[:, ::1] y, double[:, ::1] summary,
                          real[:, ::1] dz):
    """Per row: summary[0, r] = logsumexp(z_r) - <y_r, z_r>, summary[1, r] = 1 if the top
    logit (the first, on ties) is the true class (the accuracy, same pass);
    dz = (softmax(z) - y) / N."""
    cdef Py_ssize_t n = z.shape[0], k = z.shape[1], r, j, best, best_y
    cdef double top, total, log_total, loss
    with nogil:
        for r in range(n):
            best, best_y = 0, 0
            for j in range(1, k):
                if z[r, j] > z[r, best]:
                    best = j
                if y[r, j] > y[r, best_y]:
                    best_y = j
            top = z[r, best]
            total = 0
            for j in range(k):
                total += exp(z[r, j] - top)
            log_total = log(total) + top
            loss = 0
            for j in range(k):
                loss += y[r, j] * (log_total - z[r, j])
                dz[r, j] = (exp(z[r, j] - log_total) - y[r, j]) / n
            summary[0, r] = loss
            if k == 1:
                summary[1, r] = (z[r, 0] > 0) == (y[r, 0] > 0.5)
            else:
                summary[1, r] = best == best_y


# ----------------------------------------------------------------------------- Winograd
# F(4x4, 3x3), as in numba_cpu.py (winograd.py has the math and the matrices): transform
# number kind applies B^T, B, A^T, A, G or G^T, written out, to rows of length n.

cdef enum:
    BT, B, AT, A, G, GT


cdef void transform(int kind, real* s, real* d, Py_ssize_t n) noexcept nogil:
    """d = M s for M = B^T, B (6 -> 6 rows), A^T (6 -> 4), A (4 -> 6), G (3 -> 6), G^T (6 -> 3);
    row i of s starts at s + i*n (each branch its own loop, so each vectorises)."""
    cdef real two = 2, four = 4, five = 5, eight = 8, sixth = 1.0 / 6, twelfth = 1.0 / 12
    cdef real quarter = 0.25
    cdef real* s0 = s
    cdef real* s1 = s + n
    cdef real* s2 = s + 2 * n
    cdef real* s3 = s + 3 * n
    cdef real* s4 = s + 4 * n
    cdef real* s5 = s + 5 * n
    cdef Py_ssize_t e
    if kind == BT:
        for e in range(n):
            d[e] = four * s0[e] - five * s2[e] + s4[e]
            d[n + e] = s3[e] + s4[e] - four * (s1[e] + s2[e])
            d[2 * n + e] = s4[e] - s3[e] + four * (s1[e] - s2[e])
            d[3 * n + e] = s4[e] - s2[e] + two * (s3[e] - s1[e])
            d[4 * n + e] = s4[e] - s2[e] + two * (s1[e] - s3[e])
            d[5 * n + e] = four * s1[e] - five * s3[e] + s5[e]
    elif kind == B:
        for e in range(n):
            d[e] = four * s0[e]
            d[n + e] = four * (s2[e] - s1[e] + s5[e]) + two * (s4[e] - s3[e])
            d[2 * n + e] = -five * s0[e] - four * (s1[e] + s2[e]) - s3[e] - s4[e]
            d[3 * n + e] = s1[e] - s2[e] + two * (s3[e] - s4[e]) - five * s5[e]
            d[4 * n + e] = s0[e] + s1[e] + s2[e] + s3[e] + s4[e]
            d[5 * n + e] = s5[e]
    elif kind == AT:
        for e in range(n):
            d[e] = s0[e] + s1[e] + s2[e] + s3[e] + s4[e]
            d[n + e] = s1[e] - s2[e] + two * (s3[e] - s4[e])
            d[2 * n + e] = s1[e] + s2[e] + four * (s3[e] + s4[e])
            d[3 * n + e] = s1[e] - s2[e] + eight * (s3[e] - s4[e]) + s5[e]
    elif kind == A:
        for e in range(n):
            d[e] = s0[e]
            d[n + e] = s0[e] + s1[e] + s2[e] + s3[e]
            d[2 * n + e] = s0[e] - s1[e] + s2[e] - s3[e]
            d[3 * n + e] = s0[e] + two * s1[e] + four * s2[e] + eight * s3[e]
            d[4 * n + e] = s0[e] - two * s1[e] + four * s2[e] - eight * s3[e]
            d[5 * n + e] = s3[e]
    elif kind == G:
        for e in range(n):
            d[e] = quarter * s0[e]
            d[n + e] = -sixth * (s0[e] + s1[e] + s2[e])
            d[2 * n + e] = -sixth * (s0[e] - s1[e] + s2[e])
            d[3 * n + e] = quarter * sixth * s0[e] + twelfth * s1[e] + sixth * s2[e]
            d[4 * n + e] = quarter * sixth * s0[e] - twelfth * s1[e] + sixth * s2[e]
            d[5 * n + e] = s2[e]
    else:
        for e in range(n):
            d[e] = quarter * s0[e] - sixth * (s1[e] + s2[e]) + quarter * sixth * (s3[e] + s4[e])
            d[n + e] = sixth * (s2[e] - s1[e]) + twelfth * (s3[e] - s4[e])
            d[2 * n + e] = sixth * (s3[e] + s4[e] - s1[e] - s2[e]) + s5[e]


cdef void sandwich(int kind, real* src, real* tmp, real* dst, Py_ssize_t size) noexcept nogil:
    """dst = M src M^T for a k x k tile of vectors of ``size`` (src (k, k, size)): M along
    the rows, then along each row of the result. tmp (r, k, size); dst may be src."""
    cdef Py_ssize_t k = 3 if kind == G else (4 if kind == A else 6)
    cdef Py_ssize_t r = 3 if kind == GT else (4 if kind == AT else 6)
    cdef Py_ssize_t a
    transform(kind, src, tmp, k * size)
    for a in range(r):
        transform(kind, tmp + a * k * size, dst + a * r * size, size)


cdef void row_windows(real[:, :, :, ::1] x, Py_ssize_t b, Py_ssize_t ti, int pad_top,
                      int pad_left, real[:, :, ::1] d) noexcept nogil:
    """d[k*6 + q, tj, :] = x[b, 4 ti + k - pad_top, 4 tj + q - pad_left, :] (0 outside the
    image): the 6x6 input windows of the tiles (ti, tj) of image b's tile row ti."""
    cdef Py_ssize_t h = x.shape[1], w = x.shape[2], c = x.shape[3]
    cdef Py_ssize_t tj, k, q, r, col, e
    for k in range(6):
        r = ti * 4 + k - pad_top
        for tj in range(d.shape[1]):
            for q in range(6):
                col = tj * 4 + q - pad_left
                if 0 <= r < h and 0 <= col < w:
                    for e in range(c):
                        d[k * 6 + q, tj, e] = x[b, r, col, e]
                else:
                    for e in range(c):
                        d[k * 6 + q, tj, e] = 0


# As in numba_cpu.py, every transform works on one row of tiles at a time in small buffers
# rows[0] (36, tiles_w, L) and its temporary rows[1], reading or writing the block's v or m
# once (cnn_b's conv2 at batch 32 on two threads, with the branch-free gradient loop and
# BLAS adding up du: forward 0.52 -> 0.50 ms, backward 1.62 -> 1.01 ms).


cdef void copy_tiles(real[:, :, ::1] src, Py_ssize_t s0, real[:, :, ::1] dst, Py_ssize_t d0,
                     Py_ssize_t count) noexcept nogil:
    """dst[:, d0 + j] = src[:, s0 + j] for j < count: a row of tiles into or out of a block."""
    cdef Py_ssize_t p, j, e
    for p in range(src.shape[0]):
        for j in range(count):
            for e in range(src.shape[2]):
                dst[p, d0 + j, e] = src[p, s0 + j, e]


cdef void input_transform(real[:, :, :, ::1] x, Py_ssize_t lo, Py_ssize_t hi, int pad_top,
                          int pad_left, Py_ssize_t tiles_h, real[:, :, :, ::1] rows,
                          real[:, :, ::1] v) noexcept nogil:
    """v[:, t] = B^T d B for the window d of every tile t of images lo..hi."""
    cdef Py_ssize_t tiles_w = rows.shape[2], c = v.shape[2]
    cdef Py_ssize_t b, ti, t0
    for b in range(lo, hi):
        for ti in range(tiles_h):
            row_windows(x, b, ti, pad_top, pad_left, rows[0])
            sandwich(BT, &rows[0, 0, 0, 0], &rows[1, 0, 0, 0], &rows[0, 0, 0, 0], tiles_w * c)
            t0 = ((b - lo) * tiles_h + ti) * tiles_w
            copy_tiles(rows[0], 0, v, t0, tiles_w)


cdef void pool_tile_row(real[:, :, :, ::1] rows, real[::1] bias, bint relu, Py_ssize_t b,
                        Py_ssize_t ti, int pool_h, int pool_w, real[:, :, :, ::1] y,
                        offset[:, :, :, ::1] arg) noexcept nogil:
    """y[b], arg[b] at the windows inside row ti of output tiles rows[0] (pixel (r, q) of
    tile tj at rows[0, r * 4 + q, tj]): the max-pooling of them + bias (then the ReLU)."""
    cdef Py_ssize_t tiles_w = rows.shape[2], f = rows.shape[3], pr, tj, pc
    cdef Py_ssize_t down = 4 // pool_h, across = 4 // pool_w  # windows per tile
    cdef Py_ssize_t* step = window_steps(pool_h, pool_w, 4 * tiles_w * f, tiles_w * f)
    for pr in range(min(down, y.shape[1] - ti * down)):
        for tj in range(tiles_w):
            for pc in range(min(across, y.shape[2] - tj * across)):
                pool_window(&rows[0, pr * pool_h * 4 + pc * pool_w, tj, 0], step,
                            pool_h * pool_w, bias, 0 if relu else -INFINITY,
                            &y[b, ti * down + pr, tj * across + pc, 0],
                            &arg[b, ti * down + pr, tj * across + pc, 0])
    free(step)


cdef void unpool_tile_row(real[:, :, :, ::1] dy, real[:, :, :, ::1] pooled,
                          offset[:, :, :, ::1] arg, bint relu, Py_ssize_t b, Py_ssize_t ti,
                          int pool_h, int pool_w, real[:, :, :, ::1] rows,
                          double[::1] db) noexcept nogil:
    """Row ti of output tiles rows[0] (as in ``pool_tile_row``) = the pooled gradient sent
    back to each window's winner (``send_to_winner``), 0 elsewhere; db += the gradients sent."""
    cdef Py_ssize_t tiles_w = rows.shape[2], f = rows.shape[3], pr, tj, pc, i, j, e
    cdef Py_ssize_t down = 4 // pool_h, across = 4 // pool_w
    cdef Py_ssize_t* step = window_steps(pool_h, pool_w, 4 * tiles_w * f, tiles_w * f)
    cdef real* tile_row = &rows[0, 0, 0, 0]
    for e in range(16 * tiles_w * f):
        tile_row[e] = 0
    for pr in range(min(down, dy.shape[1] - ti * down)):
        i = ti * down + pr
        for tj in range(tiles_w):
            for pc in range(min(across, dy.shape[2] - tj * across)):
                j = tj * across + pc
                send_to_winner(&rows[0, pr * pool_h * 4 + pc * pool_w, tj, 0], step,
                               pool_h * pool_w, &dy[b, i, j, 0], &pooled[b, i, j, 0],
                               &arg[b, i, j, 0], relu, f)
                for e in range(f):
                    db[e] += dy[b, i, j, e] * ((pooled[b, i, j, e] > 0) | (not relu))
    free(step)


cdef void output_transform(real[:, :, ::1] m, real[::1] bias, bint relu, Py_ssize_t lo,
                           Py_ssize_t hi, Py_ssize_t out_h, Py_ssize_t out_w,
                           real[:, :, :, ::1] rows, int pool_h, int pool_w,
                           real[:, :, :, ::1] y, offset[:, :, :, ::1] arg) noexcept nogil:
    """y = A^T m A + bias (then the ReLU) at every tile's pixels inside the output (out_h,
    out_w); or with a pool (pool_h > 0, dividing the tile: every window inside one tile),
    y and arg max-pooled (``pool_tile_row``)."""
    cdef Py_ssize_t f = bias.shape[0], tiles_h = (out_h + 3) // 4
    cdef Py_ssize_t tiles_w = rows.shape[2]
    cdef Py_ssize_t b, ti, t0, tj, r, q, e
    cdef real value
    for b in range(lo, hi):
        for ti in range(tiles_h):
            t0 = ((b - lo) * tiles_h + ti) * tiles_w
            copy_tiles(m, t0, rows[0], 0, tiles_w)
            sandwich(AT, &rows[0, 0, 0, 0], &rows[1, 0, 0, 0], &rows[0, 0, 0, 0], tiles_w * f)
            if pool_h:
                pool_tile_row(rows, bias, relu, b, ti, pool_h, pool_w, y, arg)
                continue
            for r in range(min(4, out_h - ti * 4)):
                for tj in range(tiles_w):
                    for q in range(min(4, out_w - tj * 4)):
                        for e in range(f):
                            value = rows[0, r * 4 + q, tj, e] + bias[e]
                            y[b, ti * 4 + r, tj * 4 + q, e] = 0 if relu and value < 0 else value


cdef void output_gradient_transform(real[:, :, :, ::1] dy, bint relu,
                                    real[:, :, :, ::1] relu_out, Py_ssize_t lo, Py_ssize_t hi,
                                    Py_ssize_t out_h, Py_ssize_t out_w, real[:, :, :, ::1] rows,
                                    int pool_h, int pool_w, offset[:, :, :, ::1] arg,
                                    real[:, :, ::1] dm, double[::1] db) noexcept nogil:
    """g = dy through the ReLU (0 past the output's edge; db += g) -- or with a pool, dy and
    relu_out pooled and sent back to the winners arg (``unpool_tile_row``) --, dm = A g A^T
    per tile."""
    cdef Py_ssize_t f = dy.shape[3], tiles_h = (out_h + 3) // 4
    cdef Py_ssize_t tiles_w = rows.shape[2]
    cdef Py_ssize_t b, ti, t0, tj, r, q, i, j, e
    cdef real value
    for b in range(lo, hi):
        for ti in range(tiles_h):
            if pool_h:
                unpool_tile_row(dy, relu_out, arg, relu, b, ti, pool_h, pool_w, rows, db)
            else:
                for r in range(4):
                    for tj in range(tiles_w):
                        for q in range(4):
                            i = ti * 4 + r
                            j = tj * 4 + q
                            if i >= out_h or j >= out_w:
                                for e in range(f):
                                    rows[0, r * 4 + q, tj, e] = 0
                                continue
                            for e in range(f):  # branch-free, so GCC vectorises it
                                value = dy[b, i, j, e]
                                if relu:
                                    value = value * (relu_out[b, i, j, e] > 0)
                                rows[0, r * 4 + q, tj, e] = value
                                db[e] += value
            sandwich(A, &rows[0, 0, 0, 0], &rows[1, 0, 0, 0], &rows[0, 0, 0, 0], tiles_w * f)
            t0 = ((b - lo) * tiles_h + ti) * tiles_w
            copy_tiles(rows[0], 0, dm, t0, tiles_w)


cdef void input_gradient_transform(real[:, :, ::1] dv, Py_ssize_t lo, Py_ssize_t hi,
                                   int pad_top, int pad_left, Py_ssize_t tiles_h,
                                   real[:, :, :, ::1] rows,
                                   real[:, :, :, ::1] dx) noexcept nogil:
    """dx[b] = the sum over image b's tiles of B dv B^T at their windows (inside the image)."""
    cdef Py_ssize_t h = dx.shape[1], w = dx.shape[2], c = dx.shape[3]
    cdef Py_ssize_t tiles_w = rows.shape[2]
    cdef Py_ssize_t b, ti, t0, tj, k, q, r, col, e
    for b in range(lo, hi):
        zero_image(dx, b)
        for ti in range(tiles_h):
            t0 = ((b - lo) * tiles_h + ti) * tiles_w
            copy_tiles(dv, t0, rows[0], 0, tiles_w)
            sandwich(B, &rows[0, 0, 0, 0], &rows[1, 0, 0, 0], &rows[0, 0, 0, 0], tiles_w * c)
            for k in range(6):
                r = ti * 4 + k - pad_top
                if 0 <= r < h:
                    for tj in range(tiles_w):
                        for q in range(6):
                            col = tj * 4 + q - pad_left
                            if 0 <= col < w:
                                for e in range(c):
                                    dx[b, r, col, e] += rows[0, k * 6 + q, tj, e]


cdef void winograd_forward_chunk(real[:, :, :, ::1] x, real[:, :, ::1] u, real[::1] bias,
                                 bint relu, int pad_top, int pad_left, int out_h, int out_w,
                                 int pool_h, int pool_w, real[:, :, :, ::1] y,
                                 offset[:, :, :, ::1] arg, real[:, :, ::1] v,
                                 real[:, :, :, ::1] rows_c, real[:, :, ::1] m,
                                 real[:, :, :, ::1] rows_f, Py_ssize_t lo,
                                 Py_ssize_t hi) noexcept nogil:
    """Images lo..hi: v = B^T d B of every tile's window, m[p] = v[p] u[p] (36 products,
    BLAS), y = A^T m A + bias (then the ReLU) at the pixels inside the output (or pooled)."""
    cdef Py_ssize_t tiles_h = (out_h + 3) // 4, tiles_w = (out_w + 3) // 4
    cdef Py_ssize_t tiles = (hi - lo) * tiles_h * tiles_w
    cdef Py_ssize_t p
    input_transform(x, lo, hi, pad_top, pad_left, tiles_h, rows_c, v)
    for p in range(36):
        gemm(&v[p, 0, 0], &u[p, 0, 0], &m[p, 0, 0], tiles, y.shape[3], x.shape[3], False, False)
    output_transform(m, bias, relu, lo, hi, out_h, out_w, rows_f, pool_h, pool_w, y, arg)


def winograd_forward(real[:, :, :, ::1] x, real[:, :, ::1] u, real[::1] bias, bint relu,
                     int pad_top, int pad_left, int out_h, int out_w, int pool_h, int pool_w,
                     real[:, :, :, ::1] y, offset[:, :, :, ::1] arg, real[:, :, :, ::1] v,
                     real[:, :, :, :, ::1] rows_c, real[:, :, :, ::1] m,
                     real[:, :, :, :, ::1] rows_f, int chunks):
    """Per chunk of images (one per thread), a block at a time: ``winograd_forward_chunk``.
    y (N, out_h, out_w, F), or with a pool (pool_h > 0) y and arg (N, out_h // pool_h,
    out_w // pool_w, F). v (chunks, 36, tiles, C), m (chunks, 36, tiles, F): each chunk's
    own, for the tiles of one block of its images; rows_c (chunks, 2, 36, tiles_w, C),
    rows_f (..., F): its rows."""
    cdef Py_ssize_t n = y.shape[0], step = (n + chunks - 1) // chunks
    cdef Py_ssize_t block = v.shape[2] // (((out_h + 3) // 4) * ((out_w + 3) // 4))
    cdef Py_ssize_t chunk, lo, hi, b0
    for chunk in prange(chunks, nogil=True, schedule="static", num_threads=chunks):
        lo = chunk * step
        hi = min(n, lo + step)
        b0 = lo
        while b0 < hi:  # (range() with a variable step needs the GIL)
            winograd_forward_chunk(x, u, bias, relu, pad_top, pad_left, out_h, out_w, pool_h,
                                   pool_w, y, arg, v[chunk], rows_c[chunk], m[chunk],
                                   rows_f[chunk], b0, min(hi, b0 + block))
            b0 = b0 + block


cdef void winograd_backward_chunk(real[:, :, :, ::1] x, real[:, :, ::1] ut,
                                  real[:, :, :, ::1] dy, bint relu, real[:, :, :, ::1] relu_out,
                                  int pad_top, int pad_left, int out_h, int out_w, int pool_h,
                                  int pool_w, offset[:, :, :, ::1] arg, real[:, :, ::1] v,
                                  real[:, :, :, ::1] rows_c, real[:, :, ::1] dm,
                                  real[:, :, :, ::1] rows_f, real[:, :, ::1] du, double[::1] db,
                                  real[:, :, :, ::1] dx, bint need_dx, Py_ssize_t lo,
                                  Py_ssize_t hi) noexcept nogil:
    """Images lo..hi: g = dy through the ReLU (db += g; or through the pooling too),
    dm = A g A^T, v = B^T d B again, du[p] += v[p]^T dm[p]; with need_dx, dv[p] = dm[p] ut[p]
    (ut[p] = u[p]^T; into v) and dx = the sum over tiles of B dv B^T at their windows."""
    cdef Py_ssize_t f = dy.shape[3], c = x.shape[3]
    cdef Py_ssize_t tiles_h = (out_h + 3) // 4, tiles_w = (out_w + 3) // 4
    cdef Py_ssize_t tiles = (hi - lo) * tiles_h * tiles_w
    cdef Py_ssize_t p
    output_gradient_transform(dy, relu, relu_out, lo, hi, out_h, out_w, rows_f, pool_h, pool_w,
                              arg, dm, db)
    input_transform(x, lo, hi, pad_top, pad_left, tiles_h, rows_c, v)
    for p in range(36):
        gemm(&v[p, 0, 0], &dm[p, 0, 0], &du[p, 0, 0], c, f, tiles, True, False, True)
        if need_dx:
            gemm(&dm[p, 0, 0], &ut[p, 0, 0], &v[p, 0, 0], tiles, c, f, False, False)
    if need_dx:
        input_gradient_transform(v, lo, hi, pad_top, pad_left, tiles_h, rows_c, dx)


def winograd_backward(real[:, :, :, ::1] x, real[:, :, ::1] ut, real[:, :, :, ::1] dy, bint relu,
                      real[:, :, :, ::1] relu_out, int pad_top, int pad_left, int out_h,
                      int out_w, int pool_h, int pool_w, offset[:, :, :, ::1] arg,
                      real[:, :, :, ::1] v, real[:, :, :, :, ::1] rows_c, real[:, :, :, ::1] dm,
                      real[:, :, :, :, ::1] rows_f, real[:, :, :, ::1] du_parts,
                      double[:, ::1] db_parts, real[:, :, :, ::1] dx, bint need_dx, int chunks):
    """Per chunk (one per thread), a block of images at a time: ``winograd_backward_chunk``
    adding into its own du_parts[chunk] (BLAS adds each block's products; zeros for an
    empty chunk) and db_parts[chunk]. dW = G^T du G comes after the sum over chunks. dy and
    relu_out: as ``winograd_forward``'s y (pooled with a pool), arg its offsets."""
    cdef Py_ssize_t n = dy.shape[0], step = (n + chunks - 1) // chunks
    cdef Py_ssize_t block = v.shape[2] // (((out_h + 3) // 4) * ((out_w + 3) // 4))
    cdef Py_ssize_t chunk, lo, hi, b0
    db_parts[:] = 0
    du_parts[:] = 0
    for chunk in prange(chunks, nogil=True, schedule="static", num_threads=chunks):
        lo = chunk * step
        hi = min(n, lo + step)
        b0 = lo
        while b0 < hi:
            winograd_backward_chunk(x, ut, dy, relu, relu_out, pad_top, pad_left, out_h,
                                    out_w, pool_h, pool_w, arg, v[chunk], rows_c[chunk],
                                    dm[chunk], rows_f[chunk], du_parts[chunk], db_parts[chunk],
                                    dx, need_dx, b0, min(hi, b0 + block))
            b0 = b0 + block


def winograd_kernel(real[:, :, ::1] w, real[:, :, ::1] u):
    """u = G w G^T for every (channel, filter): w (9, C, F) -> u (36, C, F) (or, from w
    (9, F, C), the per-point transposes)."""
    cdef Py_ssize_t size = w.shape[1] * w.shape[2]
    cdef real* tmp = <real*> malloc(18 * size * sizeof(real))
    if tmp == NULL:
        raise MemoryError("winograd: no memory for the kernel transform's temporary")
    sandwich(G, &w[0, 0, 0], tmp, &u[0, 0, 0], size)
    free(tmp)


def winograd_kernel_gradient(real[:, :, ::1] du, real[:, :, ::1] dw):
    """dw = G^T du G for every (channel, filter): du (36, C, F) -> dw (9, C, F)."""
    cdef Py_ssize_t size = du.shape[1] * du.shape[2]
    cdef real* tmp = <real*> malloc(18 * size * sizeof(real))
    if tmp == NULL:
        raise MemoryError("winograd: no memory for the kernel transform's temporary")
    sandwich(GT, &du[0, 0, 0], tmp, &dw[0, 0, 0], size)
    free(tmp)
