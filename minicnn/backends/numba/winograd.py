"""Winograd F(4x4, 3x3) convolutions (../winograd.py has the math): per chunk of images,
the input tiles transformed, 36 BLAS products over the channels, and the output tiles
transformed back (and, with a MaxPool2D after the layer, pooled row of tiles by row)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .blas import matmul
from .chunks import chunk_rows
from .jit import JIT
from .plane import keep_max, narrow, send_to_winner

# Winograd F(4x4, 3x3) (winograd.py has the math and the matrices). ``_transform`` applies
# one of those six matrices, written out, to the rows of s (rows, L): every row is a vector
# over channels (or taps), so the loops over e vectorise; its constants are in the arrays'
# dtype, so float32 stays float32. A tile transform applies it along both axes of a
# (rows, rows, channels) tile (``_sandwich``).
BT, B, AT, A, G, GT = range(6)  # which matrix: B^T, B = (B^T)^T, A^T, A, G, G^T


@njit(**JIT)
def _transform(kind, s, d):
    """d = M s for M = B^T, B (6 -> 6 rows), A^T (6 -> 4), A (4 -> 6), G (3 -> 6), G^T (6 -> 3)."""
    real = s.dtype.type
    two, four, five, eight = real(2.0), real(4.0), real(5.0), real(8.0)
    sixth, twelfth, quarter = real(1.0 / 6.0), real(1.0 / 12.0), real(0.25)
    if kind == BT:
        for e in range(s.shape[1]):
            s0, s1, s2, s3, s4, s5 = s[0, e], s[1, e], s[2, e], s[3, e], s[4, e], s[5, e]
            d[0, e] = four * s0 - five * s2 + s4
            d[1, e] = s3 + s4 - four * (s1 + s2)
            d[2, e] = s4 - s3 + four * (s1 - s2)
            d[3, e] = s4 - s2 + two * (s3 - s1)
            d[4, e] = s4 - s2 + two * (s1 - s3)
            d[5, e] = four * s1 - five * s3 + s5
    elif kind == B:
        for e in range(s.shape[1]):
            s0, s1, s2, s3, s4, s5 = s[0, e], s[1, e], s[2, e], s[3, e], s[4, e], s[5, e]
            d[0, e] = four * s0
            d[1, e] = four * (s2 - s1 + s5) + two * (s4 - s3)
            d[2, e] = -five * s0 - four * (s1 + s2) - s3 - s4
            d[3, e] = s1 - s2 + two * (s3 - s4) - five * s5
            d[4, e] = s0 + s1 + s2 + s3 + s4
            d[5, e] = s5
    elif kind == AT:
        for e in range(s.shape[1]):
            s0, s1, s2, s3, s4, s5 = s[0, e], s[1, e], s[2, e], s[3, e], s[4, e], s[5, e]
            d[0, e] = s0 + s1 + s2 + s3 + s4
            d[1, e] = s1 - s2 + two * (s3 - s4)
            d[2, e] = s1 + s2 + four * (s3 + s4)
            d[3, e] = s1 - s2 + eight * (s3 - s4) + s5
    elif kind == A:
        for e in range(s.shape[1]):
            s0, s1, s2, s3 = s[0, e], s[1, e], s[2, e], s[3, e]
            d[0, e] = s0
            d[1, e] = s0 + s1 + s2 + s3
            d[2, e] = s0 - s1 + s2 - s3
            d[3, e] = s0 + two * s1 + four * s2 + eight * s3
            d[4, e] = s0 - two * s1 + four * s2 - eight * s3
            d[5, e] = s3
    elif kind == G:
        for e in range(s.shape[1]):
            s0, s1, s2 = s[0, e], s[1, e], s[2, e]
            d[0, e] = quarter * s0
            d[1, e] = -sixth * (s0 + s1 + s2)
            d[2, e] = -sixth * (s0 - s1 + s2)
            d[3, e] = quarter * sixth * s0 + twelfth * s1 + sixth * s2
            d[4, e] = quarter * sixth * s0 - twelfth * s1 + sixth * s2
            d[5, e] = s2
    else:  # GT
        for e in range(s.shape[1]):
            s0, s1, s2, s3, s4, s5 = s[0, e], s[1, e], s[2, e], s[3, e], s[4, e], s[5, e]
            d[0, e] = quarter * s0 - sixth * (s1 + s2) + quarter * sixth * (s3 + s4)
            d[1, e] = sixth * (s2 - s1) + twelfth * (s3 - s4)
            d[2, e] = sixth * (s3 + s4 - s1 - s2) + s5


@njit(**JIT)
def _sandwich(kind, src, tmp, dst):
    """dst = M src M^T for tiles of vectors: src (k*k, ...) holds a k x k tile of vectors
    (everything after the first axis: tiles x channels), dst gets the r x r result in its
    first r*r rows. M along the tile's rows (src seen as (k, k*L)), then along each row of
    the result. tmp holds r*k rows; dst may be src (src is read only by the first pass)."""
    k = 3 if kind == G else 4 if kind == A else 6
    r = 3 if kind == GT else 4 if kind == AT else 6
    size = src[0].size
    flat_tmp = tmp.reshape(-1)[:r * k * size]
    _transform(kind, src.reshape(-1)[:k * k * size].reshape(k, k * size),
               flat_tmp.reshape(r, k * size))
    rows, out = flat_tmp.reshape(r, k, size), dst.reshape(-1)[:r * r * size].reshape(r, r, size)
    for a in range(r):
        _transform(kind, rows[a], out[a])


@njit(**JIT)
def _row_windows(x, b, ti, pad_top, pad_left, d):
    """d[k*6 + q, tj, :] = x[b, 4 ti + k - pad_top, 4 tj + q - pad_left, :] (0 outside the
    image): the 6x6 input windows of the tiles (ti, tj) of image b's tile row ti."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
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
                        d[k * 6 + q, tj, e] = 0.0


# A block's transformed tiles v (36, tiles, C) and m (36, tiles, F) are too large for the
# core's caches, so every transform works on one row of tiles at a time in small buffers
# (36, tiles_w, L) (``rows[0]``, its temporary ``rows[1]``) and reads or writes the block's
# buffer once, not four times.


@njit(**JIT)
def _copy_tiles(src, s0, dst, d0, count):
    """dst[:, d0 + j] = src[:, s0 + j] for j < count: a row of tiles into or out of a block."""
    for p in range(src.shape[0]):
        for j in range(count):
            for e in range(src.shape[2]):
                dst[p, d0 + j, e] = src[p, s0 + j, e]


@njit(**JIT)
def _input_transform(x, lo, hi, pad_top, pad_left, tiles_h, rows, v):
    """v[:, t] = B^T d B for the window d of every tile t of images lo..hi."""
    d, tiles_w = rows[0], rows.shape[2]
    for b in range(lo, hi):
        for ti in range(tiles_h):
            _row_windows(x, b, ti, pad_top, pad_left, d)
            _sandwich(BT, d, rows[1], d)
            t0 = ((b - lo) * tiles_h + ti) * tiles_w
            _copy_tiles(d, 0, v, t0, tiles_w)


@njit(**JIT)
def _output_transform(m, bias, relu, lo, hi, out_h, out_w, rows, pool_h, pool_w, y, arg):
    """y = A^T m A + bias (then the ReLU) at every tile's pixels inside the output (out_h,
    out_w); or with a pool (pool_h > 0, dividing the tile: every window inside one tile),
    y and arg max-pooled (``keep_max``)."""
    f, tiles_h = bias.shape[0], (out_h + 3) // 4
    o, tiles_w = rows[0], rows.shape[2]
    for b in range(lo, hi):
        for ti in range(tiles_h):
            t0 = ((b - lo) * tiles_h + ti) * tiles_w
            _copy_tiles(m, t0, o, 0, tiles_w)
            _sandwich(AT, o, rows[1], o)
            if pool_h:
                _pool_tile_row(o, bias, relu, b, ti, pool_h, pool_w, y, arg)
                continue
            for r in range(min(4, out_h - ti * 4)):
                for tj in range(tiles_w):
                    for q in range(min(4, out_w - tj * 4)):
                        for e in range(f):
                            value = o[r * 4 + q, tj, e] + bias[e]
                            y[b, ti * 4 + r, tj * 4 + q, e] = \
                                0.0 if relu and value < 0.0 else value


@njit(**JIT)
def _pool_tile_row(o, bias, relu, b, ti, pool_h, pool_w, y, arg):
    """y[b], arg[b] at the windows inside row ti of output tiles o (pixel (r, q) of tile tj
    at o[r * 4 + q, tj]): the max-pooling of o + bias (then the ReLU)."""
    down, across = 4 // pool_h, 4 // pool_w  # windows per tile
    where = np.empty(y.shape[3], np.int32)
    for pr in range(min(down, y.shape[1] - ti * down)):
        for tj in range(o.shape[1]):
            for pc in range(min(across, y.shape[2] - tj * across)):
                i, j = ti * down + pr, tj * across + pc
                for di in range(pool_h):
                    for dj in range(pool_w):
                        point = (pr * pool_h + di) * 4 + pc * pool_w + dj
                        keep_max(o[point, tj], bias, relu, di * pool_w + dj, y[b, i, j],
                                  where)
                narrow(where, arg[b, i, j])


@njit(**JIT)
def _unpool_tile_row(dy, pooled, arg, relu, b, ti, pool_h, pool_w, g, db):
    """Row ti of output tiles g (as in ``_pool_tile_row``) = the pooled gradient sent back to
    each window's winner (``send_to_winner``), 0 elsewhere; db += the gradients sent."""
    down, across = 4 // pool_h, 4 // pool_w
    g[:16] = 0.0
    for pr in range(min(down, dy.shape[1] - ti * down)):
        i = ti * down + pr
        for tj in range(g.shape[1]):
            for pc in range(min(across, dy.shape[2] - tj * across)):
                j = tj * across + pc
                for di in range(pool_h):
                    for dj in range(pool_w):
                        point = (pr * pool_h + di) * 4 + pc * pool_w + dj
                        send_to_winner(dy, pooled, arg, relu, b, i, j, di * pool_w + dj,
                                        g[point, tj])
                for e in range(dy.shape[3]):
                    db[e] += dy[b, i, j, e] * ((pooled[b, i, j, e] > 0) | (not relu))


@njit(**JIT)
def _output_gradient_transform(dy, relu, relu_out, images, geometry, rows, pool, arg, dm, db):
    """g = dy through the ReLU (0 past the output's edge; db += g) -- or with a pool, dy and
    relu_out pooled and sent back to the winners arg (``_unpool_tile_row``) --, dm = A g A^T
    per tile of images lo..hi (``images``)."""
    lo, hi = images
    out_h, out_w = geometry[6], geometry[7]
    pool_h, pool_w = pool
    f, tiles_h = dy.shape[3], (out_h + 3) // 4
    g, tiles_w = rows[0], rows.shape[2]
    for b in range(lo, hi):
        for ti in range(tiles_h):
            if pool_h:
                _unpool_tile_row(dy, relu_out, arg, relu, b, ti, pool_h, pool_w, g, db)
            else:
                for r in range(4):
                    for tj in range(tiles_w):
                        for q in range(4):
                            i, j = ti * 4 + r, tj * 4 + q
                            if i >= out_h or j >= out_w:
                                g[r * 4 + q, tj] = 0.0
                                continue
                            for e in range(f):
                                value = dy[b, i, j, e]
                                if relu:
                                    value = value * (relu_out[b, i, j, e] > 0)
                                g[r * 4 + q, tj, e] = value
                                db[e] += value
            _sandwich(A, g, rows[1], g)
            t0 = ((b - lo) * tiles_h + ti) * tiles_w
            _copy_tiles(g, 0, dm, t0, tiles_w)


@njit(**JIT)
def _input_gradient_transform(dv, lo, hi, pad_top, pad_left, tiles_h, rows, dx):
    """dx[b] = the sum over image b's tiles of B dv B^T at their windows (inside the image)."""
    h, w, c = dx.shape[1], dx.shape[2], dx.shape[3]
    d, tiles_w = rows[0], rows.shape[2]
    for b in range(lo, hi):
        dx[b] = 0.0
        for ti in range(tiles_h):
            t0 = ((b - lo) * tiles_h + ti) * tiles_w
            _copy_tiles(dv, t0, d, 0, tiles_w)
            _sandwich(B, d, rows[1], d)
            for k in range(6):
                r = ti * 4 + k - pad_top
                if 0 <= r < h:
                    for tj in range(tiles_w):
                        for q in range(6):
                            col = tj * 4 + q - pad_left
                            if 0 <= col < w:
                                for e in range(c):
                                    dx[b, r, col, e] += d[k * 6 + q, tj, e]


@njit(**JIT)
def _winograd_forward_chunk(x, u, bias, relu, geometry, pool, y, arg, scratch, images):
    """Images lo..hi (``images``): v = B^T d B of every tile's window d, m[p] = v[p] u[p] (36
    products), y = A^T m A + bias (then the ReLU) at the tile's pixels inside the output (or
    pooled). ``scratch``: this chunk's (v, rows_c, m, rows_f)."""
    _, _, _, _, pad_top, pad_left, out_h, out_w = geometry
    pool_h, pool_w = pool
    v, rows_c, m, rows_f = scratch[0], scratch[1], scratch[2], scratch[3]
    lo, hi = images
    tiles_h, tiles_w = (out_h + 3) // 4, (out_w + 3) // 4
    tiles = (hi - lo) * tiles_h * tiles_w
    _input_transform(x, lo, hi, pad_top, pad_left, tiles_h, rows_c, v)
    for p in range(36):
        matmul(v[p, :tiles], u[p], m[p, :tiles])
    _output_transform(m, bias, relu, lo, hi, out_h, out_w, rows_f, pool_h, pool_w, y, arg)


@njit(parallel=True, **JIT)
def winograd_forward(x, u, bias, relu, geometry, pool, y, arg, scratch, chunks):
    """Per chunk of images (one per thread), a block at a time: ``_winograd_forward_chunk``.
    y (N, out_h, out_w, F), or with a pool (pool_h > 0) y and arg (N, out_h // pool_h,
    out_w // pool_w, F). ``geometry``: the convolution's (kh, kw, sh, sw, pad_top, pad_left,
    out_h, out_w); ``scratch``: (v, rows_c, m, rows_f), v (chunks, 36, tiles, C), m (chunks,
    36, tiles, F): each chunk's own, for the tiles of one block of its images; rows_c
    (chunks, 2, 36, tiles_w, C), rows_f (..., F): its rows."""
    out_h, out_w = geometry[6], geometry[7]
    v, rows_c, m, rows_f = scratch[0], scratch[1], scratch[2], scratch[3]
    block = v.shape[2] // (((out_h + 3) // 4) * ((out_w + 3) // 4))
    for chunk in prange(chunks):
        lo, hi = chunk_rows(chunk, chunks, y.shape[0])
        for b0 in range(lo, hi, block):
            _winograd_forward_chunk(x, u, bias, relu, geometry, pool, y, arg,
                                    (v[chunk], rows_c[chunk], m[chunk], rows_f[chunk]),
                                    (b0, min(hi, b0 + block)))


@njit(**JIT)
def _winograd_backward_chunk(x, ut, dy, relu, relu_out, geometry, pool, arg, scratch, grads,
                             need_dx, images):
    """Images lo..hi (``images``): g = dy through the ReLU (db += g; or through the pooling
    too), dm = A g A^T, v = B^T d B again, du[p] = v[p]^T dm[p]; with need_dx, dv[p] =
    dm[p] ut[p] (ut[p] = u[p]^T; into v) and dx = the sum over tiles of B dv B^T at their
    windows. ``scratch``: this chunk's (v, rows_c, dm, rows_f); ``grads``: (du, db, dx)."""
    _, _, _, _, pad_top, pad_left, out_h, out_w = geometry
    v, rows_c, dm, rows_f = scratch[0], scratch[1], scratch[2], scratch[3]
    du, db, dx = grads[0], grads[1], grads[2]
    lo, hi = images
    tiles_h, tiles_w = (out_h + 3) // 4, (out_w + 3) // 4
    tiles = (hi - lo) * tiles_h * tiles_w
    _output_gradient_transform(dy, relu, relu_out, images, geometry, rows_f, pool, arg, dm, db)
    _input_transform(x, lo, hi, pad_top, pad_left, tiles_h, rows_c, v)
    for p in range(36):
        matmul(v[p, :tiles].T, dm[p, :tiles], du[p])
        if need_dx:
            matmul(dm[p, :tiles], ut[p], v[p, :tiles])
    if need_dx:
        _input_gradient_transform(v, lo, hi, pad_top, pad_left, tiles_h, rows_c, dx)


@njit(parallel=True, **JIT)
def winograd_backward(x, ut, dy, relu, relu_out, geometry, pool, arg, scratch, grads, need_dx,
                      chunks):
    """Per chunk (one per thread), a block of images at a time: ``_winograd_backward_chunk``
    into its own du_parts[chunk] (the blocks' du added up; zeros for an empty chunk) and
    db_parts[chunk]. dW = G^T du G comes after the sum over chunks. dy and relu_out: as
    ``winograd_forward``'s y (pooled with a pool), arg its offsets. ``scratch``: (v, rows_c,
    dm, rows_f); ``grads``: (du_parts, db_parts, dx)."""
    out_h, out_w = geometry[6], geometry[7]
    v, rows_c, dm, rows_f = scratch[0], scratch[1], scratch[2], scratch[3]
    du_parts, db_parts, dx = grads[0], grads[1], grads[2]
    block = v.shape[2] // (((out_h + 3) // 4) * ((out_w + 3) // 4))
    for chunk in prange(chunks):
        lo, hi = chunk_rows(chunk, chunks, dy.shape[0])
        db_parts[chunk] = 0.0
        du_parts[chunk] = 0.0
        du = np.empty_like(du_parts[chunk])
        for b0 in range(lo, hi, block):
            _winograd_backward_chunk(x, ut, dy, relu, relu_out, geometry, pool, arg,
                                     (v[chunk], rows_c[chunk], dm[chunk], rows_f[chunk]),
                                     (du, db_parts[chunk], dx), need_dx,
                                     (b0, min(hi, b0 + block)))
            du_parts[chunk] += du


@njit(**JIT)
def winograd_kernel(w, u):
    """u = G w G^T for every (channel, filter): w (9, C, F) -> u (36, C, F) (or, from w
    (9, F, C), the per-point transposes)."""
    _sandwich(G, w, np.empty((18, w.shape[1], w.shape[2]), w.dtype), u)


@njit(**JIT)
def winograd_kernel_gradient(du, dw):
    """dw = G^T du G for every (channel, filter): du (36, C, F) -> dw (9, C, F)."""
    _sandwich(GT, du, np.empty((18, du.shape[1], du.shape[2]), du.dtype), dw)


