"""The Python driver of the compiled CPU kernels, written once for the Numba and Cython
backends.

Both backends compile the same kernels under the same names and arguments
(``contract.COMPILED_KERNELS``, held in the backend class's ``kernels``): the matrix
products cut the batch into ``chunks`` runs of rows, one per thread, and multiply with
single-threaded BLAS (a dense layer's weight gradient is cut along W's rows instead);
pooling, BatchNorm, the loss and the element-wise passes loop in parallel or per row.
``CompiledCPUBackend`` checks shapes (the kernels run without bounds checks), allocates the
kernels' outputs and adds up their per-chunk partial results. Why each trick is there, and
what it was measured to buy, is in docs/performance.md.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np

from . import winograd
from .flagged import FlaggedProductsBackend
from .heap import keep_freed_memory
from .reference.elementwise import dropout_threshold
from .shapes import (
    conv_geometry,
    require_conv_shapes,
    require_dense_shapes,
    require_in_place,
    require_joinable,
    require_real,
    require_same_shape,
    require_splittable,
)
from .threads import blas_single_thread, chunks_for

_SCRATCH = threading.local()
_SCRATCH_BUFFERS = 32  # distinct (name, shape, dtype) kept per thread: a few per layer
# Optimizer updates save this many elements of each array before updating them in place,
# so that an element whose new values are not finite can be put back (keep_finite).
UPDATE_BLOCK = 1024


def _scratch(name: str, shape, dtype):
    """A buffer a kernel uses only during one call (window matrices, masked gradients),
    kept per thread for the next call of the same shape: fresh multi-megabyte arrays every
    step would cost page faults."""
    buffers = _SCRATCH.__dict__.setdefault("buffers", {})
    key = (name, tuple(shape), np.dtype(dtype))
    if key not in buffers:
        if len(buffers) >= _SCRATCH_BUFFERS:
            buffers.clear()
        buffers[key] = np.empty(shape, dtype)
    return buffers[key]


def split_by_weight_rows(rows: int, inputs: int, chunks: int) -> bool:
    """Whether a dense layer's products (x (rows, inputs) times W (inputs, units)) go better
    split by W's rows than by the batch's: each thread then reads 1/chunks of W instead of
    all of it, but writes a partial (rows, units) product that a second pass adds up. Per
    thread that trades inputs (1 - 1/chunks) units of W read for about rows (2 - 1/chunks)
    units written and read: the weights must outweigh the batch (for two threads, more than
    three inputs per row: a small batch into a wide layer, a Dense after Flatten)."""
    return chunks > 1 and inputs * (chunks - 1) > rows * (2 * chunks - 1)


class KernelGeometry(NamedTuple):
    """A convolution as its compiled kernels take it: window, strides, the padding before
    the first row and column, the output's size."""

    kh: int
    kw: int
    sh: int
    sw: int
    pad_top: int
    pad_left: int
    out_h: int
    out_w: int


def _kernel_geometry(x, w, stride, padding) -> KernelGeometry:
    """The geometry every conv kernel takes."""
    kh, kw, _, _ = w.shape
    g = conv_geometry(x.shape[1], x.shape[2], kh, kw, stride, padding)
    return KernelGeometry(kh, kw, stride[0], stride[1], g.pad_top, g.pad_left, g.out_h, g.out_w)


def _window_matrix(x, w, g, name: str = "cols"):
    """A scratch im2col matrix: one row per output pixel, one column per (di, dj, c)."""
    return _scratch(name, (x.shape[0] * g.out_h * g.out_w, w.shape[0] * w.shape[1] * w.shape[2]),
                    x.dtype)


def _sum_parts(kernels, parts):
    """The per-chunk partial weight gradients (chunks, *shape) added up (in parallel)."""
    out = np.empty(parts.shape[1:], dtype=parts.dtype)
    kernels.sum_parts(parts.reshape(len(parts), -1), out.reshape(-1))
    return out


def _algorithm(w, stride, g) -> str:
    """How the compiled backends convolve this layer: "plane" for one input channel (one
    image at a time, its windows tap-major, a BLAS product per image); "winograd" F(4x4,
    3x3) where the layer qualifies (``winograd.applies``); else "im2col" (a product per
    chunk of images, as the reference)."""
    if w.shape[2] == 1:
        return "plane"
    if winograd.applies(w.shape, stride, g.out_h, g.out_w):
        return "winograd"
    return "im2col"


def _winograd_operands(kernels, chunks: int, x, w, g, transposed: bool = False):
    """The transformed kernel U = G w G^T (36, C, F), or with transposed its per-point
    transpose U^T (36, F, C) (the backward's dV = dM U^T then multiplies two row-major
    matrices rather than go through a transposed operand); and
    each chunk's scratch: V (chunks, 36, tiles, C) and M (chunks, 36, tiles, F) for the
    tiles of a block of its images, and the buffers its transforms work in, a row of tiles
    at a time (chunks, 2, 36, tiles_w, C) and (..., F)."""
    c, f = w.shape[2], w.shape[3]
    taps = w.transpose(0, 1, 3, 2) if transposed else w  # G acts on the taps axis only
    u = _scratch(f"winograd_u{'t' if transposed else ''}", (36, *taps.shape[2:]), x.dtype)
    kernels.winograd_kernel(np.ascontiguousarray(taps, dtype=x.dtype).reshape(9, *u.shape[1:]), u)
    tiles_h, tiles_w = winograd.tiles(g.out_h, g.out_w)
    images = min(-(-x.shape[0] // chunks), winograd.block_images(g.out_h, g.out_w))
    tiles = images * tiles_h * tiles_w  # a block of a chunk's images (winograd.BLOCK_TILES)
    v, m = (_scratch(f"winograd_{name}", (chunks, 36, tiles, width), x.dtype)
            for name, width in (("v", c), ("m", f)))
    rows_c, rows_f = (_scratch(f"winograd_rows_{name}", (chunks, 2, 36, tiles_w, width), x.dtype)
                      for name, width in (("c", c), ("f", f)))
    return u, (v, rows_c, m, rows_f)


def _winograd_backward(kernels, chunks: int, x, w, dy, relu_output, where, geometry, pool,
                       outputs, need_dx: bool):
    """The Winograd backward kernel (``outputs``: db_parts and dx, written); returns dW.
    ``relu_output`` None: no ReLU."""
    ut, scratch = _winograd_operands(kernels, chunks, x, w, geometry, transposed=True)
    du_parts = _scratch("winograd_du", (chunks, 36, *w.shape[2:]), x.dtype)
    relu = relu_output is not None
    kernels.winograd_backward(x, ut, dy, relu, relu_output if relu else dy, geometry, pool,
                              where, scratch, (du_parts, *outputs), need_dx, chunks)
    dw = np.empty_like(w, dtype=x.dtype)
    kernels.winograd_kernel_gradient(_sum_parts(kernels, du_parts), dw.reshape(9, *w.shape[2:]))
    return dw


# A convolution that no max-pooling follows: its pool (pool_h, pool_w), and the winners'
# offsets argument of the one-channel and Winograd kernels (unread).
NO_POOL = (0, 0)
_NO_OFFSETS = np.zeros((1, 1, 1, 1), dtype=np.int8)


def _bias(b, w):
    """The bias the compiled kernels always add: zeros for a layer without one."""
    return np.zeros(w.shape[-1], dtype=w.dtype) if b is None else b


def _output_gradient(dy, relu_output, chunks: int, buffer: bool = True):
    """dy as (rows, F); the buffer the kernels write dy * (relu_output > 0) into (dy itself
    without a fused ReLU, or when the kernel keeps it in registers: ``buffer=False``); the
    ReLU output as (rows, F) (dy without one); float64 per-chunk bias-gradient sums."""
    f = dy.shape[-1]
    dy2 = np.ascontiguousarray(dy).reshape(-1, f)
    if relu_output is None:
        return dy2, dy2, dy2, np.empty((chunks, f))
    require_same_shape(dy=dy, relu_output=relu_output)
    masked = _scratch("masked", dy2.shape, dy2.dtype) if buffer else dy2
    return dy2, masked, np.ascontiguousarray(relu_output).reshape(-1, f), np.empty((chunks, f))


def _pool_args(x_shape, pool, stride, padding):
    """Output shape and the integer arguments every pooling kernel takes."""
    if len(x_shape) != 4:
        raise ValueError(f"pooling expects images (N, H, W, C), got shape {tuple(x_shape)}")
    g = conv_geometry(x_shape[1], x_shape[2], *pool, stride, padding)
    out = (x_shape[0], g.out_h, g.out_w, x_shape[3])
    return out, (pool[0], pool[1], stride[0], stride[1], g.pad_top, g.pad_left)


def _require_output_gradient(dy, out):
    if tuple(dy.shape) != out:
        raise ValueError(f"pooling: output gradient has shape {tuple(dy.shape)}, expected {out}")


def _offset_dtype(pool) -> type:
    """The cache's integer type: int8 where every window offset (0 .. ph*pw - 1) fits, as
    for the usual 2x2 and 3x3 windows (the cache is written and read back every step, so
    the narrower the better), else int64."""
    return np.int8 if pool[0] * pool[1] <= 128 else np.int64


def _fused(w, stride, g, pool) -> str | None:
    """The algorithm that pools as it convolves this layer, or None."""
    algorithm = _algorithm(w, stride, g)
    if algorithm == "winograd" and winograd.TILE % pool[0] == winograd.TILE % pool[1] == 0:
        return algorithm
    return algorithm if algorithm == "plane" else None


def _pooled_shape(x, w, g, pool) -> tuple[int, int, int, int]:
    return _pool_args((x.shape[0], g.out_h, g.out_w, w.shape[3]), pool, pool, "valid")[0]


def _flat(a):
    """A C-contiguous flat view (or copy) of a, as the element-wise kernels take."""
    return np.ascontiguousarray(a).reshape(-1)


def _loss_rows(kernels, logits, y):
    """(2, N) float64: each row's loss and whether its top logit is the true class; dlogits."""
    require_same_shape(logits=logits, y=y)
    logits, y = np.ascontiguousarray(logits), np.ascontiguousarray(y, dtype=logits.dtype)
    summary, dz = np.empty((2, len(logits))), np.empty_like(logits)
    kernels.softmax_cross_entropy(logits, y, summary, dz)
    return summary, dz


class CompiledCPUBackend(FlaggedProductsBackend):
    """The kernels of a compiled CPU backend, driven from Python: a subclass sets ``kernels``
    (its compiled functions, ``contract.COMPILED_KERNELS``) and ``_threads``."""

    kernels = None  # set by NumbaBackend and CythonBackend

    def _threads(self) -> int:
        raise NotImplementedError

    def _chunks(self, n: int) -> int:
        """Runs of rows to cut n rows into: one per thread, none empty."""
        return chunks_for(n, self._threads())

    def session(self):
        """While a model trains or predicts: BLAS on one thread, the parallelism is ours;
        and (once per process) freed large arrays kept for the next step (``heap``)."""
        keep_freed_memory()
        return blas_single_thread()

    def _conv2d(self, x, w, b, stride, padding, relu):
        """im2col and a product per chunk, or the one-channel or Winograd kernels
        (``_algorithm``)."""
        kernels, chunks = self.kernels, self._chunks(len(x))
        b = _bias(b, w)
        require_conv_shapes(x, w, b=b)
        g = _kernel_geometry(x, w, stride, padding)
        x, w2 = np.ascontiguousarray(x), w.reshape(-1, w.shape[3])
        y = np.empty((x.shape[0] * g.out_h * g.out_w, w.shape[3]), dtype=x.dtype)
        images = y.reshape(x.shape[0], g.out_h, g.out_w, -1)
        algorithm = _algorithm(w, stride, g)
        if algorithm == "plane":
            kernels.plane_conv_forward(x, w2, b, bool(relu), g, NO_POOL, images, _NO_OFFSETS,
                                       chunks)
        elif algorithm == "winograd":
            u, scratch = _winograd_operands(kernels, chunks, x, w, g)
            kernels.winograd_forward(x, u, b, bool(relu), g, NO_POOL, images, _NO_OFFSETS,
                                     scratch, chunks)
        else:
            kernels.conv_forward(x, w2, b, bool(relu), g, _window_matrix(x, w, g), y, chunks)
        return y.reshape(x.shape[0], g.out_h, g.out_w, w.shape[3])


    def _conv2d_grads(self, x, w, dy, stride, padding, need_dx, relu_output):
        """dx (None unless need_dx), dW and db summed over the chunks in a fixed order."""
        kernels, chunks = self.kernels, self._chunks(len(x))
        require_conv_shapes(x, w, dy=dy, stride=stride, padding=padding)
        g = _kernel_geometry(x, w, stride, padding)
        x, w2 = np.ascontiguousarray(x), w.reshape(-1, w.shape[3])
        algorithm = _algorithm(w, stride, g)
        dy2, masked, relu2, db_parts = _output_gradient(dy, relu_output, chunks,
                                                        buffer=algorithm == "im2col")
        dx = np.empty_like(x) if need_dx else x[:1]  # untouched without need_dx
        relu = relu_output is not None
        if algorithm == "winograd":
            dw = _winograd_backward(kernels, chunks, x, w, dy2.reshape(dy.shape),
                                    relu2.reshape(dy.shape) if relu else None, _NO_OFFSETS, g,
                                    NO_POOL, (db_parts, dx), need_dx)
        else:
            dw_parts = _scratch("dw_parts", (chunks, *w2.shape), x.dtype)
            if algorithm == "plane":
                kernels.plane_conv_backward(x, w2, dy2.reshape(dy.shape), relu,
                                            relu2.reshape(dy.shape), _NO_OFFSETS, g, NO_POOL,
                                            (dw_parts, db_parts, dx), need_dx, chunks)
            else:
                cols = _window_matrix(x, w, g)
                dcols = _window_matrix(x, w, g, "dcols") if need_dx else cols[:1]
                kernels.conv_backward(x, w2, dy2, relu, relu2, masked, g, cols, dcols,
                                      (dw_parts, db_parts, dx), need_dx, chunks)
            dw = _sum_parts(kernels, dw_parts).reshape(w.shape)
        return (dx if need_dx else None), dw, db_parts.sum(axis=0).astype(x.dtype)


    def _dense(self, x, w, b, relu):
        kernels, chunks = self.kernels, self._chunks(len(x))
        b = _bias(b, w)
        require_dense_shapes(x, w, b=b)
        y = np.empty((x.shape[0], w.shape[1]), dtype=x.dtype)
        split = split_by_weight_rows(len(x), w.shape[0], chunks)
        parts = (_scratch("dense_parts", (chunks, *y.shape), x.dtype) if split
                 else np.empty((0, *y.shape), x.dtype))  # unused: no scratch kept for it
        kernels.dense_forward(np.ascontiguousarray(x), w, b, bool(relu), y, parts, split, chunks)
        return y


    def _dense_grads(self, x, w, dy, need_dx, relu_output):
        kernels, chunks = self.kernels, self._chunks(len(x))
        require_dense_shapes(x, w, dy=dy)
        dy2, masked, relu2, db_parts = _output_gradient(dy, relu_output, chunks)
        dx = np.empty_like(x) if need_dx else x[:1]  # untouched without need_dx
        dw = np.empty(w.shape, dtype=x.dtype)
        kernels.dense_backward(np.ascontiguousarray(x), w, dy2, relu_output is not None, relu2,
                               masked, dx, dw, db_parts, need_dx,
                               split_by_weight_rows(len(x), w.shape[0], chunks), chunks)
        return (dx if need_dx else None), dw, db_parts.sum(axis=0).astype(x.dtype)


    def maxpool2d_forward(self, x, pool, stride, padding="valid"):
        kernels = self.kernels
        out, args = _pool_args(x.shape, pool, stride, padding)
        y, arg = np.empty(out, dtype=x.dtype), np.empty(out, dtype=_offset_dtype(pool))
        kernels.maxpool_forward(np.ascontiguousarray(x), *args, y, arg)
        return y, arg


    def maxpool2d_backward(self, dy, cache, x_shape, pool, stride, padding="valid"):
        kernels = self.kernels
        out, args = _pool_args(x_shape, pool, stride, padding)
        _require_output_gradient(dy, out)
        require_same_shape(dy=dy, cache=cache)
        if not np.issubdtype(cache.dtype, np.integer):
            raise ValueError("maxpool2d_backward: cache must be maxpool2d_forward's integer "
                             f"window offsets, got dtype {cache.dtype}")
        if cache.dtype != np.int8:  # e.g. the reference's int64 offsets
            cache = cache.astype(np.int64, copy=False)
        dx = np.empty(x_shape, dtype=dy.dtype)
        kernels.maxpool_backward(np.ascontiguousarray(dy), np.ascontiguousarray(cache), *args, dx)
        return dx


    def avgpool2d_forward(self, x, pool, stride, padding="valid"):
        kernels = self.kernels
        out, args = _pool_args(x.shape, pool, stride, padding)
        y = np.empty(out, dtype=x.dtype)
        kernels.avgpool_forward(np.ascontiguousarray(x), *args, y)
        return y


    def avgpool2d_backward(self, dy, x_shape, pool, stride, padding="valid"):
        kernels = self.kernels
        out, args = _pool_args(x_shape, pool, stride, padding)
        _require_output_gradient(dy, out)
        dx = np.empty(x_shape, dtype=dy.dtype)
        kernels.avgpool_backward(np.ascontiguousarray(dy), *args, dx)
        return dx


    def conv2d_maxpool_forward(self, x, w, b, stride, padding, pool, relu):
        """y (N, OH // ph, OW // pw, F) and the cache: (None, offsets) fused, else (z, offsets)."""
        kernels, chunks = self.kernels, self._chunks(len(x))
        b = _bias(b, w)
        require_conv_shapes(x, w, b=b)
        g = _kernel_geometry(x, w, stride, padding)
        algorithm = _fused(w, stride, g, pool)
        if algorithm is None:
            z = self._conv2d(x, w, b, stride, padding, relu)
            y, where = self.maxpool2d_forward(z, pool, pool, "valid")
            return y, (z, where)
        out = _pooled_shape(x, w, g, pool)
        x, relu = np.ascontiguousarray(x), bool(relu)
        y, where = np.empty(out, dtype=x.dtype), np.empty(out, dtype=_offset_dtype(pool))
        if algorithm == "plane":
            kernels.plane_conv_forward(x, w.reshape(-1, w.shape[3]), b, relu, g, pool, y, where,
                                       chunks)
        else:
            u, scratch = _winograd_operands(kernels, chunks, x, w, g)
            kernels.winograd_forward(x, u, b, relu, g, pool, y, where, scratch, chunks)
        return y, (None, where)


    def conv2d_maxpool_backward(self, x, w, dy, y, cache, stride, padding, pool, need_dx, relu):
        """dx (None unless need_dx), dW and db of ``conv2d_maxpool_forward``'s y."""
        kernels, chunks = self.kernels, self._chunks(len(x))
        z, where = cache
        if z is not None:
            dz = self.maxpool2d_backward(dy, where, z.shape, pool, pool, "valid")
            return self._conv2d_grads(x, w, dz, stride, padding, need_dx, z if relu else None)
        require_conv_shapes(x, w)
        g = _kernel_geometry(x, w, stride, padding)
        _require_output_gradient(dy, _pooled_shape(x, w, g, pool))
        require_same_shape(dy=dy, y=y, cache=where)
        x, w2, relu = np.ascontiguousarray(x), w.reshape(-1, w.shape[3]), bool(relu)
        dy, y, where = (np.ascontiguousarray(a) for a in (dy, y, where))
        db_parts = np.empty((chunks, w.shape[3]))
        dx = np.empty_like(x) if need_dx else x[:1]  # untouched without need_dx
        if _fused(w, stride, g, pool) == "plane":
            dw_parts = _scratch("dw_parts", (chunks, *w2.shape), x.dtype)
            kernels.plane_conv_backward(x, w2, dy, relu, y, where, g, pool,
                                        (dw_parts, db_parts, dx), need_dx, chunks)
            dw = _sum_parts(kernels, dw_parts).reshape(w.shape)
        else:
            dw = _winograd_backward(kernels, chunks, x, w, dy, y if relu else None, where, g,
                                    pool, (db_parts, dx), need_dx)
        return (dx if need_dx else None), dw, db_parts.sum(axis=0).astype(x.dtype)


    def add_forward(self, a, b):
        require_same_shape(a=a, b=b)
        require_real("add_forward", a=a, b=b)
        a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
        out = np.empty_like(a)
        self.kernels.add(a.reshape(-1), b.reshape(-1), out.reshape(-1))
        return out

    def concatenate_forward(self, a, b):
        require_joinable(a, b)
        require_real("concatenate_forward", a=a, b=b)
        a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
        out = np.empty((a.shape[0], a.shape[1] + b.shape[1], a.shape[2]), a.dtype)
        self.kernels.join_or_split(out, a, b, True)
        return out

    def concatenate_backward(self, dy, split):
        require_splittable(dy, split)
        require_real("concatenate_backward", dy=dy)
        dy = np.ascontiguousarray(dy)
        da = np.empty((dy.shape[0], split, dy.shape[2]), dy.dtype)
        db = np.empty((dy.shape[0], dy.shape[1] - split, dy.shape[2]), dy.dtype)
        self.kernels.join_or_split(dy, da, db, False)
        return da, db

    def multiply(self, a, b):
        kernels = self.kernels
        require_same_shape(a=a, b=b)
        a, b = np.ascontiguousarray(a), np.ascontiguousarray(b, dtype=a.dtype)
        out = np.empty_like(a)
        kernels.multiply(a.reshape(-1), b.reshape(-1), out.reshape(-1))
        return out


    def dropout(self, x, rate, key):
        x = np.ascontiguousarray(x)
        out = np.empty_like(x)
        self.kernels.dropout(x.reshape(-1), dropout_threshold(rate), x.dtype.type(1 / (1 - rate)),
                             np.uint64(key), out.reshape(-1))
        return out


    def moments(self, x):
        """Per-channel mean and biased variance of x (M, C): two passes (exact, not E[x^2] -
        E[x]^2), each a set of per-chunk float64 partial sums added in a fixed order."""
        kernels, chunks = self.kernels, self._chunks(len(x))
        x = np.ascontiguousarray(x)
        parts = np.empty((chunks, 2, x.shape[1]))
        kernels.column_sums(x, x, x[0], x[0], False, chunks, parts)  # no mask: x[0]s unread
        mean = (parts[:, 0].sum(axis=0) / len(x)).astype(x.dtype)
        squares = np.empty((chunks, x.shape[1]))
        kernels.centred_squares(x, mean, chunks, squares)
        return mean, (squares.sum(axis=0) / len(x)).astype(x.dtype)


    def batchnorm_forward(self, x, gamma, beta, mean, var, epsilon):
        return self._batchnorm(x, gamma, beta, mean, var, epsilon, False)

    def batchnorm_relu_forward(self, x, gamma, beta, mean, var, epsilon):
        return self._batchnorm(x, gamma, beta, mean, var, epsilon, True)

    def batchnorm_backward(self, x_hat, gamma, var, epsilon, dy, batch_stats):
        return self._batchnorm_grads(x_hat, gamma, gamma, var, epsilon, dy, batch_stats, False)

    def batchnorm_relu_backward(self, x_hat, gamma, beta, var, epsilon, y, dy, batch_stats):
        """The mask y > 0 rebuilt from gamma x_hat + beta > 0 as x_hat is read (y unread)."""
        return self._batchnorm_grads(x_hat, gamma, beta, var, epsilon, dy, batch_stats, True)

    def _batchnorm(self, x, gamma, beta, mean, var, epsilon, relu):
        kernels = self.kernels
        x = np.ascontiguousarray(x)
        require_same_shape(gamma=gamma, beta=beta, mean=mean, var=var)
        if x.shape[1:] != gamma.shape:
            raise ValueError(f"batchnorm: rows {x.shape} and gamma {gamma.shape} disagree")
        scale = (1.0 / np.sqrt(var + epsilon)).astype(x.dtype)
        x_hat, y = np.empty_like(x), np.empty_like(x)
        kernels.normalize(x, mean, scale, gamma, beta, relu, x_hat, y)
        return y, x_hat


    def _batchnorm_grads(self, x_hat, gamma, beta, var, epsilon, dy, batch_stats, relu):
        """With relu, both passes mask dy where gamma x_hat + beta > 0 as they read it
        (without, beta is unread)."""
        kernels, chunks = self.kernels, self._chunks(len(dy))
        dy = np.ascontiguousarray(dy)
        require_same_shape(x_hat=x_hat, dy=dy)
        parts = np.empty((chunks, 2, dy.shape[1]))
        kernels.column_sums(dy, x_hat, gamma, beta, relu, chunks, parts)
        dbeta, dgamma = parts.sum(axis=0).astype(dy.dtype)
        scale = (gamma / np.sqrt(var + epsilon)).astype(dy.dtype)
        m = len(dy)
        mean_dy, mean_dy_xhat = (dbeta / m, dgamma / m) if batch_stats else \
            (np.zeros_like(dbeta), np.zeros_like(dgamma))
        dx = np.empty_like(dy)
        kernels.batchnorm_dx(x_hat, dy, scale, mean_dy, mean_dy_xhat, gamma, beta, relu, dx)
        return dx, dgamma, dbeta


    def softmax_cross_entropy(self, logits, y):
        kernels = self.kernels
        summary, dz = _loss_rows(kernels, logits, y)
        return summary[0], dz


    # element-wise: the compiled activations, softmax over rows; linear is the identity

    def activation_forward(self, name, z):
        if name == "linear":
            return z
        if name not in self.kernels.ELEMENTWISE and name != "softmax":
            return super().activation_forward(name, z)  # raises for an unknown name
        z, a = np.ascontiguousarray(z), np.empty_like(z)
        if name == "softmax":
            self.kernels.softmax_rows(z.reshape(-1, z.shape[-1]), a.reshape(-1, z.shape[-1]))
        else:
            self.kernels.activation_forward(self.kernels.ELEMENTWISE.index(name),
                                            z.reshape(-1), a.reshape(-1))
        return a

    def activation_backward(self, name, z, a, da):
        if name not in self.kernels.ELEMENTWISE:  # softmax's Jacobian product and linear
            return super().activation_backward(name, z, a, da)
        require_same_shape(z=z, a=a, da=da)
        dz = np.empty_like(a)
        self.kernels.activation_backward(self.kernels.ELEMENTWISE.index(name), _flat(z),
                                         _flat(a), _flat(da), dz.reshape(-1))
        return dz

    # optimizers

    def _saved_blocks(self, p) -> np.ndarray:
        """The update kernels' scratch (chunks, 3, UPDATE_BLOCK): each chunk of elements is
        updated a block at a time, its old values saved here first (keep_finite)."""
        return _scratch("saved_block", (self._chunks(p.size), 3, UPDATE_BLOCK), p.dtype)

    def adam_update(self, p, g, m, v, lr_t, beta_1, beta_2, epsilon):
        require_same_shape(param=p, grad=g, m=m, v=v)
        require_in_place("adam_update", p=p, m=m, v=v)
        return self.kernels.adam(p.reshape(-1), _flat(g), m.reshape(-1), v.reshape(-1), lr_t,
                                 beta_1, beta_2, epsilon, self._saved_blocks(p))

    def sgd_update(self, p, g, velocity, lr, momentum, nesterov=False):
        require_same_shape(param=p, grad=g, velocity=velocity)
        require_in_place("sgd_update", p=p, velocity=velocity)
        if nesterov:  # the reference's
            return super().sgd_update(p, g, velocity, lr, momentum, nesterov)
        return self.kernels.sgd(p.reshape(-1), _flat(g),
                                None if momentum == 0 else velocity.reshape(-1), lr, momentum,
                                self._saved_blocks(p))
