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


def conv_forward(real[:, :, :, ::1] x, real[:, ::1] w2, real[::1] bias, bint relu,
                 geometry_t geometry, real[:, ::1] cols, real[:, ::1] y2, int chunks):
    """Per chunk of images (one per thread): im2col, y = cols @ W (BLAS), y += bias (then
    the ReLU)."""
    cdef int kh, kw, sh, sw, pad_top, pad_left, out_h, out_w
    kh, kw, sh, sw, pad_top, pad_left, out_h, out_w = geometry
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
                  real[:, ::1] relu_out, real[:, ::1] masked, geometry_t geometry,
                  real[:, ::1] cols, real[:, ::1] dcols, tuple grads, bint need_dx, int chunks):
    """Per chunk: dy through the ReLU and its bias sums, im2col, dW_chunk = cols^T dy,
    dcols = dy W^T (BLAS), col2im. ``grads``: (dw_parts, db_parts, dx)."""
    cdef int kh, kw, sh, sw, pad_top, pad_left, out_h, out_w
    kh, kw, sh, sw, pad_top, pad_left, out_h, out_w = geometry
    cdef real[:, :, ::1] dw_parts = grads[0]
    cdef double[:, ::1] db_parts = grads[1]
    cdef real[:, :, :, ::1] dx = grads[2]
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

