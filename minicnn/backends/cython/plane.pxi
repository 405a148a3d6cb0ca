# One input channel (a first layer): numba/plane.py's kernels. One image at a time: a
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


def plane_conv_forward(real[:, :, :, ::1] x, real[:, ::1] w2, real[::1] bias, bint relu,
                       geometry_t geometry, pool_t pool, real[:, :, :, ::1] y,
                       offset[:, :, :, ::1] arg, int chunks):
    """Per image: its windows X (taps, pixels), z = X^T W (BLAS) + bias (then the ReLU) into
    its rows of y (N, out_h, out_w, F); or with a pool (pool_h > 0), into a buffer that
    max-pooling reads while it is in cache: y (N, out_h // pool_h, out_w // pool_w, F) and
    arg are the pooled output."""
    cdef int kh, kw, sh, sw, pad_top, pad_left, out_h, out_w
    kh, kw, sh, sw, pad_top, pad_left, out_h, out_w = geometry
    cdef int pool_h = pool[0], pool_w = pool[1]
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


def plane_conv_backward(real[:, :, :, ::1] x, real[:, ::1] w2, real[:, :, :, ::1] dy, bint relu,
                        real[:, :, :, ::1] relu_out, offset[:, :, :, ::1] arg,
                        geometry_t geometry, pool_t pool, tuple grads, bint need_dx, int chunks):
    """Per chunk of images (one per thread), into its own dw_parts[chunk] and
    db_parts[chunk] (zeros for an empty chunk; ``grads``: (dw_parts, db_parts, dx)), per
    image: G = its dy (N, out_h, out_w, F) through the ReLU (relu_out: the forward's output)
    -- or with a pool, dy and relu_out pooled and sent back to the winners arg
    (``unpool_gradient``) -- its windows X with a row of ones below (xt: taps + 1 rows),
    [dW; db] += [X; 1] G (BLAS, then added in double); with need_dx, dX = W G^T (taps,
    pixels) added back into a padded plane whose inside is the image's dx."""
    cdef int kh, kw, sh, sw, pad_top, pad_left, out_h, out_w
    kh, kw, sh, sw, pad_top, pad_left, out_h, out_w = geometry
    cdef int pool_h = pool[0], pool_w = pool[1]
    cdef real[:, :, ::1] dw_parts = grads[0]
    cdef double[:, ::1] db_parts = grads[1]
    cdef real[:, :, :, ::1] dx = grads[2]
    cdef Py_ssize_t n = x.shape[0], per_image = out_h * out_w, f = w2.shape[1]
    cdef Py_ssize_t step = (n + chunks - 1) // chunks, taps = kh * kw
    cdef Py_ssize_t chunk, lo, hi, t, u, b, r, yy, xx
    cdef real* dyb
    cdef real* relu_b
    cdef real* gb
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
        gb = &g[chunk, 0, 0]
        for b in range(lo, hi):
            if pool_h:
                unpool_gradient(dy, relu_out, arg, b, relu, pool_h, pool_w, gb, out_h, out_w)
            else:
                dyb = &dy[b, 0, 0, 0]  # pointers: GCC vectorises this loop, not memoryviews
                relu_b = &relu_out[b, 0, 0, 0] if relu else dyb
                for r in range(per_image * f):
                    gb[r] = dyb[r] * (relu_b[r] > 0) if relu else dyb[r]
            pad_image(x, b, pad_top, pad_left, plane[2 * chunk])
            plane_windows(plane[2 * chunk], kh, kw, sh, sw, out_h, out_w, xt[chunk])
            gemm(&xt[chunk, 0, 0], gb, &part[chunk, 0, 0], taps + 1, f, per_image, False,
                 False)
            for t in range(taps):
                for u in range(f):
                    dw[chunk, t, u] += part[chunk, t, u]
            for u in range(f):
                db_parts[chunk, u] += part[chunk, taps, u]
            if need_dx:
                gemm(&w2[0, 0], gb, &xt[chunk, 0, 0], taps, per_image, f, False, True)
                plane_col2im(xt[chunk], kh, kw, sh, sw, out_h, out_w, plane[2 * chunk + 1])
                for yy in range(x.shape[1]):
                    for xx in range(x.shape[2]):
                        dx[b, yy, xx, 0] = plane[2 * chunk + 1, pad_top + yy, pad_left + xx]
        for t in range(taps):
            for u in range(f):
                dw_parts[chunk, t, u] = <real> dw[chunk, t, u]
