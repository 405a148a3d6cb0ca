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


def adam(real[::1] p, real[::1] g, real[::1] m, real[::1] v, double lr_t, double beta_1,
         double beta_2, double epsilon):
    """m += (1-b1)(g - m); v += (1-b2)(g^2 - v) (both flushed to zero below the smallest
    normal float, as the reference's flush_to_zero); p -= lr_t m / (sqrt(v) + eps), in the
    arrays' precision (as NumPy computes it). An element whose new values are not all
    finite keeps its old ones (the reference's keep_finite: written, then put back in the
    rare case, which keeps the common path short); returns how many did."""
    cdef Py_ssize_t i
    cdef int kept = 0
    cdef real rate_m = 1 - beta_1, rate_v = 1 - beta_2, step = lr_t, eps = epsilon
    cdef real tiny = FLT_MIN if real is float else DBL_MIN
    cdef real mi, vi, pi, old_p, old_m, old_v
    for i in prange(p.shape[0], nogil=True, schedule="static"):
        old_p, old_m, old_v = p[i], m[i], v[i]
        mi = old_m + rate_m * (g[i] - old_m)
        vi = old_v + rate_v * (g[i] * g[i] - old_v)
        mi = mi - mi if fabs(mi) < tiny else mi
        vi = vi - vi if fabs(vi) < tiny else vi
        pi = old_p - step * mi / (sqrt(vi) + eps)
        m[i], v[i], p[i] = mi, vi, pi
        if not finite3(mi, vi, pi):  # rare: put the old values back
            m[i], v[i], p[i] = old_m, old_v, old_p
            kept += 1
    return kept


def sgd(real[::1] p, real[::1] g, real[::1] velocity, double lr, double momentum):
    """velocity = momentum velocity - lr g (flushed to zero below the smallest normal
    float); p += velocity. With momentum 0 (velocity None): p -= lr g. keep_finite as adam."""
    cdef Py_ssize_t i
    cdef int kept = 0
    cdef real rate = lr, keep = momentum, vi, pi
    cdef real tiny = FLT_MIN if real is float else DBL_MIN
    cdef bint plain = velocity is None
    for i in prange(p.shape[0], nogil=True, schedule="static"):
        if plain:
            vi = 0
            pi = p[i] - rate * g[i]
        else:
            vi = keep * velocity[i] - rate * g[i]
            vi = vi - vi if fabs(vi) < tiny else vi
            pi = p[i] + vi
        if finite3(vi, pi, pi):
            if not plain:
                velocity[i] = vi
            p[i] = pi
        else:  # rare: keep the old values
            kept += 1
    return kept


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
