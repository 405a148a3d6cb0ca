# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""Cython kernels: the reference's im2col/col2im, pooling and element-wise passes,
compiled, typed for float32 and float64 (the fused type ``real``) and parallel over the
batch with OpenMP (prange). The matrix products stay in Python (NumPy's BLAS): see
cython_backend.py for why.
"""

from cython.parallel cimport prange
from libc.math cimport sqrt

ctypedef fused real:
    float
    double


def im2col(real[:, :, :, ::1] x, int kh, int kw, int sh, int sw, int pad_top, int pad_left,
           int out_h, int out_w, real[:, ::1] cols):
    """cols[(n, i, j), (di, dj, c)] = x[n, i*sh + di - pad_top, j*sw + dj - pad_left, c] or 0."""
    cdef Py_ssize_t n = x.shape[0], h = x.shape[1], w = x.shape[2], c = x.shape[3]
    cdef Py_ssize_t b, i, j, di, dj, ch, row, base, y, xx
    for b in prange(n, nogil=True, schedule="static"):
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


def col2im(real[:, ::1] cols, int kh, int kw, int sh, int sw, int pad_top, int pad_left,
           int out_h, int out_w, real[:, :, :, ::1] dx):
    """dx[n, y, x, c] = sum of the window entries that read that pixel; one image per thread."""
    cdef Py_ssize_t n = dx.shape[0], h = dx.shape[1], w = dx.shape[2], c = dx.shape[3]
    cdef Py_ssize_t b, i, j, di, dj, ch, row, base, y, xx
    for b in prange(n, nogil=True, schedule="static"):
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


def add_bias(real[:, ::1] y, real[::1] bias):
    """y[r, f] += bias[f] in place."""
    cdef Py_ssize_t r, f
    for r in prange(y.shape[0], nogil=True, schedule="static"):
        for f in range(y.shape[1]):
            y[r, f] += bias[f]


def maxpool_forward(real[:, :, :, ::1] x, int ph, int pw, int sh, int sw,
                    real[:, :, :, ::1] y, long long[:, :, :, ::1] arg):
    """y = window max; arg = its offset di * pw + dj inside the window (first max wins)."""
    cdef Py_ssize_t n = y.shape[0], out_h = y.shape[1], out_w = y.shape[2], c = y.shape[3]
    cdef Py_ssize_t b, i, j, ch, di, dj
    cdef real best, v
    cdef long long best_k
    for b in prange(n, nogil=True, schedule="static"):
        for i in range(out_h):
            for j in range(out_w):
                for ch in range(c):
                    best = x[b, i * sh, j * sw, ch]
                    best_k = 0
                    for di in range(ph):
                        for dj in range(pw):
                            v = x[b, i * sh + di, j * sw + dj, ch]
                            if v > best:
                                best = v
                                best_k = di * pw + dj
                    y[b, i, j, ch] = best
                    arg[b, i, j, ch] = best_k


def maxpool_backward(real[:, :, :, ::1] dy, long long[:, :, :, ::1] arg, int pw, int sh, int sw,
                     real[:, :, :, ::1] dx):
    """Each output gradient goes to the pixel that won its window (added where windows overlap)."""
    cdef Py_ssize_t n = dy.shape[0], out_h = dy.shape[1], out_w = dy.shape[2], c = dy.shape[3]
    cdef Py_ssize_t b, i, j, ch, y, xx
    cdef long long k
    for b in prange(n, nogil=True, schedule="static"):
        for y in range(dx.shape[1]):
            for xx in range(dx.shape[2]):
                for ch in range(c):
                    dx[b, y, xx, ch] = 0
        for i in range(out_h):
            for j in range(out_w):
                for ch in range(c):
                    k = arg[b, i, j, ch]
                    dx[b, i * sh + k // pw, j * sw + k % pw, ch] += dy[b, i, j, ch]


def relu_forward(real[::1] z, real[::1] a):
    cdef Py_ssize_t i
    for i in prange(z.shape[0], nogil=True, schedule="static"):
        a[i] = z[i] if z[i] > 0 else 0


def relu_backward(real[::1] a, real[::1] da, real[::1] dz):
    cdef Py_ssize_t i
    for i in prange(a.shape[0], nogil=True, schedule="static"):
        dz[i] = da[i] if a[i] > 0 else 0


def adam(real[::1] p, real[::1] g, real[::1] m, real[::1] v, double lr_t, double beta_1,
         double beta_2, double epsilon):
    """m += (1-b1)(g - m); v += (1-b2)(g^2 - v); p -= lr_t m / (sqrt(v) + eps)."""
    cdef Py_ssize_t i
    for i in prange(p.shape[0], nogil=True, schedule="static"):
        m[i] += (1 - beta_1) * (g[i] - m[i])
        v[i] += (1 - beta_2) * (g[i] * g[i] - v[i])
        p[i] -= lr_t * m[i] / (sqrt(v[i]) + epsilon)
