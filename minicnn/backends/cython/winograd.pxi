# ----------------------------------------------------------------------------- Winograd
# F(4x4, 3x3), as in numba/winograd.py (../winograd.py has the math and the matrices): transform
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


# As in numba/winograd.py, every transform works on one row of tiles at a time in small buffers
# rows[0] (36, tiles_w, L) and its temporary rows[1], reading or writing the block's v or m
# once.


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
                                    real[:, :, :, ::1] relu_out,
                                    (Py_ssize_t, Py_ssize_t) images, geometry_t geometry,
                                    real[:, :, :, ::1] rows, pool_t pool,
                                    offset[:, :, :, ::1] arg, real[:, :, ::1] dm,
                                    double[::1] db) noexcept nogil:
    """g = dy through the ReLU (0 past the output's edge; db += g) -- or with a pool, dy and
    relu_out pooled and sent back to the winners arg (``unpool_tile_row``) --, dm = A g A^T
    per tile of images lo..hi (``images``)."""
    cdef Py_ssize_t lo = images[0], hi = images[1], out_h = geometry[6], out_w = geometry[7]
    cdef int pool_h = pool[0], pool_w = pool[1]
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


def winograd_forward(real[:, :, :, ::1] x, real[:, :, ::1] u, real[::1] bias, bint relu,
                     geometry_t geometry, pool_t pool, real[:, :, :, ::1] y,
                     offset[:, :, :, ::1] arg, tuple scratch, int chunks):
    """Per chunk of images (one per thread), a block at a time: v = B^T d B of every tile's
    window, m[p] = v[p] u[p] (36 products, BLAS), y = A^T m A + bias (then the ReLU) at the
    pixels inside the output (or pooled). y (N, out_h, out_w, F), or with a pool (pool_h >
    0) y and arg (N, out_h // pool_h, out_w // pool_w, F). ``scratch``: (v, rows_c, m,
    rows_f), v (chunks, 36, tiles, C), m (chunks, 36, tiles, F): each chunk's own, for the
    tiles of one block of its images; rows_c (chunks, 2, 36, tiles_w, C), rows_f (..., F):
    its rows."""
    cdef int pad_top = geometry[4], pad_left = geometry[5]
    cdef int out_h = geometry[6], out_w = geometry[7], pool_h = pool[0], pool_w = pool[1]
    cdef real[:, :, :, ::1] v = scratch[0]
    cdef real[:, :, :, :, ::1] rows_c = scratch[1]
    cdef real[:, :, :, ::1] m = scratch[2]
    cdef real[:, :, :, :, ::1] rows_f = scratch[3]
    cdef Py_ssize_t n = y.shape[0], step = (n + chunks - 1) // chunks
    cdef Py_ssize_t tiles_h = (out_h + 3) // 4, tiles_w = (out_w + 3) // 4
    cdef Py_ssize_t block = v.shape[2] // (tiles_h * tiles_w)
    cdef Py_ssize_t chunk, lo, hi, b0, b1, p
    for chunk in prange(chunks, nogil=True, schedule="static", num_threads=chunks):
        lo = chunk * step
        hi = min(n, lo + step)
        b0 = lo
        while b0 < hi:  # (range() with a variable step needs the GIL)
            b1 = min(hi, b0 + block)
            input_transform(x, b0, b1, pad_top, pad_left, tiles_h, rows_c[chunk], v[chunk])
            for p in range(36):
                gemm(&v[chunk, p, 0, 0], &u[p, 0, 0], &m[chunk, p, 0, 0],
                     (b1 - b0) * tiles_h * tiles_w, y.shape[3], x.shape[3], False, False)
            output_transform(m[chunk], bias, relu, b0, b1, out_h, out_w, rows_f[chunk], pool_h,
                             pool_w, y, arg)
            b0 = b0 + block


def winograd_backward(real[:, :, :, ::1] x, real[:, :, ::1] ut, real[:, :, :, ::1] dy, bint relu,
                      real[:, :, :, ::1] relu_out, geometry_t geometry, pool_t pool,
                      offset[:, :, :, ::1] arg, tuple scratch, tuple grads, bint need_dx,
                      int chunks):
    """Per chunk (one per thread), a block of images at a time: g = dy through the ReLU
    (db += g; or through the pooling too), dm = A g A^T, v = B^T d B again, du[p] +=
    v[p]^T dm[p] (into the chunk's own du_parts[chunk]: BLAS adds each block's products;
    zeros for an empty chunk); with need_dx, dv[p] = dm[p] ut[p] (ut[p] = u[p]^T; into v)
    and dx = the sum over tiles of B dv B^T at their windows. dW = G^T du G comes after the
    sum over chunks. dy and relu_out: as ``winograd_forward``'s y (pooled with a pool), arg
    its offsets. ``scratch``: (v, rows_c, dm, rows_f); ``grads``: (du_parts, db_parts, dx)."""
    cdef int pad_top = geometry[4], pad_left = geometry[5]
    cdef int out_h = geometry[6], out_w = geometry[7]
    cdef real[:, :, :, ::1] v = scratch[0]
    cdef real[:, :, :, :, ::1] rows_c = scratch[1]
    cdef real[:, :, :, ::1] dm = scratch[2]
    cdef real[:, :, :, :, ::1] rows_f = scratch[3]
    cdef real[:, :, :, ::1] du_parts = grads[0]
    cdef double[:, ::1] db_parts = grads[1]
    cdef real[:, :, :, ::1] dx = grads[2]
    cdef Py_ssize_t n = dy.shape[0], step = (n + chunks - 1) // chunks
    cdef Py_ssize_t f = dy.shape[3], c = x.shape[3]
    cdef Py_ssize_t tiles_h = (out_h + 3) // 4, tiles_w = (out_w + 3) // 4
    cdef Py_ssize_t block = v.shape[2] // (tiles_h * tiles_w)
    cdef Py_ssize_t chunk, lo, hi, b0, b1, p, tiles
    db_parts[:] = 0
    du_parts[:] = 0
    for chunk in prange(chunks, nogil=True, schedule="static", num_threads=chunks):
        lo = chunk * step
        hi = min(n, lo + step)
        b0 = lo
        while b0 < hi:
            b1 = min(hi, b0 + block)
            tiles = (b1 - b0) * tiles_h * tiles_w
            output_gradient_transform(dy, relu, relu_out, (b0, b1), geometry, rows_f[chunk],
                                      pool, arg, dm[chunk], db_parts[chunk])
            input_transform(x, b0, b1, pad_top, pad_left, tiles_h, rows_c[chunk], v[chunk])
            for p in range(36):
                gemm(&v[chunk, p, 0, 0], &dm[chunk, p, 0, 0], &du_parts[chunk, p, 0, 0], c, f,
                     tiles, True, False, True)
                if need_dx:
                    gemm(&dm[chunk, p, 0, 0], &ut[p, 0, 0], &v[chunk, p, 0, 0], tiles, c, f,
                         False, False)
            if need_dx:
                input_gradient_transform(v[chunk], b0, b1, pad_top, pad_left, tiles_h,
                                         rows_c[chunk], dx)
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
