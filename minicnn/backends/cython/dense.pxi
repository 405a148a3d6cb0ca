def dense_forward(real[:, ::1] x, real[:, ::1] w, real[::1] bias, bint relu, real[:, ::1] y,
                  real[:, :, ::1] parts, bint split, int chunks):
    """y = x W (BLAS) + bias (then the ReLU). Per chunk of rows; or, with ``split``, per
    chunk of W's rows: parts[c] = x[:, k0:k1] W[k0:k1], then y = their sum + bias (as
    numba's)."""
    cdef Py_ssize_t n = x.shape[0], step = (n + chunks - 1) // chunks, units = w.shape[1]
    cdef Py_ssize_t k = x.shape[1], k_step = (k + chunks - 1) // chunks
    cdef Py_ssize_t chunk, lo, hi, k0, k1, r, f
    cdef real total
    if not split:
        for chunk in prange(chunks, nogil=True, schedule="static", num_threads=chunks):
            lo = chunk * step
            hi = min(n, lo + step)
            if lo < hi:
                gemm(&x[lo, 0], &w[0, 0], &y[lo, 0], hi - lo, units, k, False, False)
                add_bias(&y[lo, 0], bias, relu, hi - lo)
        return
    for chunk in prange(chunks, nogil=True, schedule="static", num_threads=chunks):
        k0 = chunk * k_step
        k1 = min(k, k0 + k_step)
        if k0 < k1:
            gemm(&x[0, k0], &w[k0, 0], &parts[chunk, 0, 0], n, units, k1 - k0, False, False,
                 False, k)
        else:  # more chunks than W's rows fill: this one's product is an empty sum
            memset(&parts[chunk, 0, 0], 0, n * units * sizeof(real))
    for r in prange(n, nogil=True, schedule="static", num_threads=chunks):
        for f in range(units):
            total = parts[0, r, f]
            for chunk in range(1, chunks):  # a fixed order: the same bits every run
                total = total + parts[chunk, r, f]
            y[r, f] = total
        add_bias(&y[r, 0], bias, relu, 1)


def dense_backward(real[:, ::1] x, real[:, ::1] w, real[:, ::1] dy, bint relu,
                   real[:, ::1] relu_out, real[:, ::1] masked, real[:, ::1] dx,
                   real[:, ::1] dw, double[:, ::1] db_parts, bint need_dx, bint split,
                   int chunks):
    """Per chunk of rows: dy through the ReLU and its bias sums (and, without ``split``,
    dx = dy W^T); then per chunk of W's rows: dW[k0:k1] = x[:, k0:k1]^T dy (BLAS), so no
    thread's partial dW needs adding up (and, with ``split``, dx[:, k0:k1] = dy W[k0:k1]^T)."""
    cdef Py_ssize_t n = x.shape[0], step = (n + chunks - 1) // chunks, u = w.shape[1]
    cdef Py_ssize_t k = x.shape[1], k_step = (k + chunks - 1) // chunks
    cdef Py_ssize_t chunk, lo, hi, k0, k1
    cdef real* g = &masked[0, 0] if relu else &dy[0, 0]
    for chunk in prange(chunks, nogil=True, schedule="static", num_threads=chunks):
        lo = chunk * step
        hi = min(n, lo + step)
        output_gradient_rows(dy, relu, relu_out, masked, lo, hi, db_parts[chunk])
        if need_dx and not split and lo < hi:
            gemm(g + lo * u, &w[0, 0], &dx[lo, 0], hi - lo, k, u, False, True)
    for chunk in prange(chunks, nogil=True, schedule="static", num_threads=chunks):
        k0 = chunk * k_step
        k1 = min(k, k0 + k_step)
        if k0 < k1:
            gemm(&x[0, k0], g, &dw[k0, 0], k1 - k0, u, n, True, False, False, k)
            if need_dx and split:
                gemm(g, &w[k0, 0], &dx[0, k0], n, k1 - k0, u, False, True, False, 0, k)


# Pooling window (i, j) starts at (i*sh - pad_top, j*sw - pad_left) and is clipped to the
# image: the same as -inf padding (max) or padding left out of the mean (average).

