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
    and narrowed at the end (the rule: a select vectorises when its operands are as wide as
    the floats it compares; docs/performance.md)."""
    cdef Py_ssize_t ch
    for ch in range(width):
        arg[ch] = <offset> where[ch]


cdef void maxpool_image(real[:, :, :, ::1] x, Py_ssize_t b, int ph, int pw, int sh, int sw,
                        int pad_top, int pad_left, real[:, :, :, ::1] y,
                        offset[:, :, :, ::1] arg) noexcept nogil:
    """Image b: y = window max, arg = its offset (first max wins; a NaN beats every number,
    as in np.argmax). One pass over each window, channels innermost, through pointers; the
    offsets are kept as C ints in ``where`` and narrowed into arg at the end (a select as
    wide as the floats vectorises: docs/performance.md)."""
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
    one image per iteration (``maxpool_image``)."""
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
    distance through a small table, not two integer divisions per pixel."""
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


