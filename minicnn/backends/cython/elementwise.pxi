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


cdef double SLOPE = LEAKY_SLOPE  # leaky_relu's negative slope, the reference's


def activation_forward(int kind, real[::1] z, real[::1] a):
    """a = f(z) for f = ELEMENTWISE[kind]."""
    cdef Py_ssize_t i
    cdef real s = <real>SLOPE
    if kind == 0:  # ReLU, the hot path: a branch-free loop the compiler vectorises
        for i in prange(z.shape[0], nogil=True, schedule="static"):
            a[i] = z[i] if z[i] > 0 else 0
        return
    for i in prange(z.shape[0], nogil=True, schedule="static"):
        a[i] = activate(kind, z[i], s)


def activation_backward(int kind, real[::1] z, real[::1] a, real[::1] da, real[::1] dz):
    """dz = da f'(z)."""
    cdef Py_ssize_t i
    cdef real s = <real>SLOPE
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


# Dropout's counter-based draws: the reference's constants (reference/elementwise.py).
cdef unsigned long long GOLDEN = _ref_elementwise.GOLDEN
cdef unsigned long long MIX_1 = _ref_elementwise.MIX_1
cdef unsigned long long MIX_2 = _ref_elementwise.MIX_2
cdef int SHIFT_0 = _ref_elementwise.SHIFTS[0], SHIFT_1 = _ref_elementwise.SHIFTS[1]
cdef int SHIFT_2 = _ref_elementwise.SHIFTS[2], SHIFT_3 = _ref_elementwise.SHIFTS[3]


def dropout(real[::1] x, unsigned long long threshold, real scale, unsigned long long key,
            real[::1] out):
    """out = x * scale where element i's draw (reference.elementwise.dropout_draws, the same
    integer steps, wrapping mod 2^64) is >= threshold, else 0."""
    cdef Py_ssize_t i
    cdef unsigned long long z
    for i in prange(x.shape[0], nogil=True, schedule="static"):
        z = <unsigned long long>i * GOLDEN + key
        z = (z ^ (z >> SHIFT_0)) * MIX_1
        z = (z ^ (z >> SHIFT_1)) * MIX_2
        z = (z ^ (z >> SHIFT_2)) >> SHIFT_3
        out[i] = x[i] * scale
        if z < threshold:
            out[i] = 0


cdef inline bint finite3(real a, real b, real c) noexcept nogil:
    """a, b and c are neither NaN nor inf (x - x is 0 only then): in the arrays' precision,
    with no call."""
    return (a - a == 0) & (b - b == 0) & (c - c == 0)


cdef inline real flushed(real x, real tiny) noexcept nogil:
    """x, or 0 where |x| is below the smallest normal float ``tiny`` (the reference's
    flush_to_zero; NaN stays NaN)."""
    return x - x if -tiny < x < tiny else x


cdef inline real root(real x) noexcept nogil:
    """sqrt in the arrays' precision (libc's sqrt would compute a float's in double)."""
    if real is float:
        return sqrtf(x)
    return sqrt(x)


cdef inline Py_ssize_t adam_block(real* p, real* g, real* m, real* v, Py_ssize_t n,
                                  real step, real rate_m, real rate_v, real eps,
                                  real tiny) noexcept nogil:
    """Adam on n elements, in place; -> how many elements' new values are not all finite."""
    cdef Py_ssize_t i, bad = 0
    cdef real mi, vi, pi
    for i in range(n):
        mi = flushed(m[i] + rate_m * (g[i] - m[i]), tiny)
        vi = flushed(v[i] + rate_v * (g[i] * g[i] - v[i]), tiny)
        pi = p[i] - step * mi / (root(vi) + eps)
        m[i], v[i], p[i] = mi, vi, pi
        bad += not finite3(mi, vi, pi)
    return bad


cdef inline Py_ssize_t sgd_block(real* p, real* g, real* velocity, Py_ssize_t n, real rate,
                                 real keep, real tiny) noexcept nogil:
    """SGD on n elements, in place (velocity is p itself, and unused, when keep (the
    momentum) = 0); -> how many elements' new values are not finite."""
    cdef Py_ssize_t i, bad = 0
    cdef real vi, pi
    if keep == 0:
        for i in range(n):
            pi = p[i] - rate * g[i]
            p[i] = pi
            bad += not finite3(pi, pi, pi)
        return bad
    for i in range(n):
        vi = flushed(keep * velocity[i] - rate * g[i], tiny)
        pi = p[i] + vi
        velocity[i], p[i] = vi, pi
        bad += not finite3(vi, pi, pi)
    return bad


cdef inline void save_block(real* old, Py_ssize_t block, real* a, real* b, real* c,
                            Py_ssize_t n) noexcept nogil:
    """old (3, block)'s rows = a, b, c's first n values (before their update)."""
    cdef Py_ssize_t i
    for i in range(n):
        old[i], old[block + i], old[2 * block + i] = a[i], b[i], c[i]


cdef inline Py_ssize_t restore_block(real* old, Py_ssize_t block, real* a, real* b, real* c,
                                     Py_ssize_t n) noexcept nogil:
    """Put ``save_block``'s values back wherever a, b or c is not finite; -> how many."""
    cdef Py_ssize_t i, kept = 0
    for i in range(n):
        if not finite3(a[i], b[i], c[i]):
            a[i], b[i], c[i] = old[i], old[block + i], old[2 * block + i]
            kept += 1
    return kept


cdef Py_ssize_t update(bint adam, real[::1] p, real[::1] g, real[::1] a, real[::1] b,
                       real s0, real s1, real s2, real s3, real[:, :, ::1] saved):
    """Adam (``adam``: a, b = m, v; s0..s3 = lr_t, 1 - beta_1, 1 - beta_2, epsilon) or SGD
    (a = b = the velocity; s0, s1 = lr, momentum) a block at a time in each of
    saved.shape[0] chunks, as numba's ``_update``: save a block's old values in ``saved``
    (chunks, 3, block), update it in place with no branch, put back the rare non-finite
    ones (the reference's keep_finite); -> how many elements kept their old values."""
    cdef Py_ssize_t chunks = saved.shape[0], block = saved.shape[2], n = p.shape[0]
    cdef Py_ssize_t step = (n + chunks - 1) // chunks, chunk, lo, hi, stop, bad, kept = 0
    cdef real tiny = FLT_MIN if real is float else DBL_MIN
    for chunk in prange(chunks, nogil=True, schedule="static", num_threads=chunks):
        lo = chunk * step
        stop = min(n, lo + step)
        while lo < stop:
            hi = min(lo + block, stop)
            save_block(&saved[chunk, 0, 0], block, &p[lo], &a[lo], &b[lo], hi - lo)
            if adam:
                bad = adam_block(&p[lo], &g[lo], &a[lo], &b[lo], hi - lo, s0, s1, s2, s3, tiny)
            else:
                bad = sgd_block(&p[lo], &g[lo], &a[lo], hi - lo, s0, s1, tiny)
            if bad:
                kept += restore_block(&saved[chunk, 0, 0], block, &p[lo], &a[lo], &b[lo],
                                      hi - lo)
            lo = hi
    return kept


def adam(real[::1] p, real[::1] g, real[::1] m, real[::1] v, double lr_t, double beta_1,
         double beta_2, double epsilon, real[:, :, ::1] saved):
    """m += (1-b1)(g - m); v += (1-b2)(g^2 - v) (both flushed to zero below the smallest
    normal float, as the reference's flush_to_zero); p -= lr_t m / (sqrt(v) + eps), in the
    arrays' precision (as NumPy computes it), with keep_finite (``update``); returns how
    many elements kept their old values."""
    return update(True, p, g, m, v, lr_t, 1 - beta_1, 1 - beta_2, epsilon, saved)


def sgd(real[::1] p, real[::1] g, real[::1] velocity, double lr, double momentum,
        real[:, :, ::1] saved):
    """velocity = momentum velocity - lr g (flushed to zero below the smallest normal
    float); p += velocity. With momentum 0 (velocity None): p -= lr g. keep_finite as adam."""
    cdef real[::1] state = p if velocity is None else velocity
    return update(False, p, g, state, state, lr, momentum, 0, 0, saved)


def softmax_rows(real[:, ::1] z, real[:, ::1] a):
    """a[r] = softmax(z[r]), each row shifted by its max so exp never overflows."""
    cdef Py_ssize_t r, k, n = z.shape[0], m = z.shape[1]
    cdef double top, total
    for r in prange(n, nogil=True, schedule="static"):
        top = z[r, 0]
        for k in range(1, m):
            if z[r, k] > top:
                top = z[r, k]
        total = 0
        for k in range(m):
            a[r, k] = exp(z[r, k] - top)
            total = total + a[r, k]
        for k in range(m):
            a[r, k] = a[r, k] / total
