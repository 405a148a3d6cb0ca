# ----------------------------------------------------------------------------- batch norm
# (M, C) rows, as in numba/normalization.py: per-chunk partial sums in double, then element-wise passes.


def column_sums(real[:, ::1] a, real[:, ::1] b, real[::1] gamma, real[::1] beta, bint relu,
                int chunks, double[:, :, ::1] parts):
    """parts[chunk, 0] = sum of a's rows, parts[chunk, 1] = sum of (a * b)'s rows; relu: a is
    first zeroed where gamma b + beta <= 0."""
    cdef Py_ssize_t m = a.shape[0], c = a.shape[1], step = (m + chunks - 1) // chunks
    cdef Py_ssize_t chunk, r, k, lo, hi
    cdef real v
    for chunk in prange(chunks, nogil=True, schedule="static", num_threads=chunks):
        lo = chunk * step
        hi = min(m, lo + step)
        for k in range(c):
            parts[chunk, 0, k] = 0
            parts[chunk, 1, k] = 0
        for r in range(lo, hi):
            for k in range(c):
                v = a[r, k]
                if relu and not b[r, k] * gamma[k] + beta[k] > 0:
                    v = 0
                parts[chunk, 0, k] += v
                parts[chunk, 1, k] += v * b[r, k]


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
              real[::1] beta, bint relu, real[:, ::1] x_hat, real[:, ::1] y):
    """x_hat = (x - mean) * scale; y = gamma x_hat + beta, relu: max(y, 0)."""
    cdef Py_ssize_t r, k
    cdef real v, out
    for r in prange(x.shape[0], nogil=True, schedule="static"):
        for k in range(x.shape[1]):
            v = (x[r, k] - mean[k]) * scale[k]
            x_hat[r, k] = v
            out = v * gamma[k] + beta[k]
            if relu and out < 0:  # as an if GCC vectorises it; NaN stays NaN, as np.maximum
                out = 0
            y[r, k] = out


def batchnorm_dx(real[:, ::1] x_hat, real[:, ::1] dy, real[::1] scale, real[::1] mean_dy,
                 real[::1] mean_dy_xhat, real[::1] gamma, real[::1] beta, bint relu,
                 real[:, ::1] dx):
    """dx = scale (dy - mean(dy) - x_hat mean(dy x_hat)); relu: dy is first zeroed where
    gamma x_hat + beta <= 0."""
    cdef Py_ssize_t r, k
    cdef real g
    for r in prange(dy.shape[0], nogil=True, schedule="static"):
        for k in range(dy.shape[1]):
            g = dy[r, k]
            if relu and not x_hat[r, k] * gamma[k] + beta[k] > 0:
                g = 0
            dx[r, k] = scale[k] * (g - mean_dy[k] - x_hat[r, k] * mean_dy_xhat[k])
