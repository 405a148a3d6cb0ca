"""numba.cuda backend: every kernel of a training step on the GPU.

The algorithm is the reference's (im2col, a matrix product, col2im), fused so that a step
launches few kernels and moves little memory:

- the matrix product is the classic shared-memory tiled kernel (each 16x16 thread block
  stages 16x16 tiles of both operands, so every value read from global memory is used 16
  times); for a convolution it reads the im2col matrix straight from the images as it
  loads its tiles (implicit GEMM: no window matrix, no im2col launch);
- its epilogue adds the bias and applies a fused ReLU; the backward products apply the
  ReLU's derivative as they load the output gradient, and the weight-gradient product
  gets an extra row of ones, so the bias gradient comes out of the same launch;
- the input gradient of a convolution is one gather per input pixel (dy W^T and col2im
  in one pass); a split-K product is summed by the last of its blocks, in the same launch;
  Adam updates every parameter in one launch;
- inside ``step_buffers`` every temporary comes from buffers kept from the previous step
  of the same kind: no device allocation after the first step;
- every kernel is compiled for an explicit signature (``_kernel``): numba-cuda launches
  such a specialized kernel without typing its arguments (checked under the simulator).

Parameters, optimizer state, activations and the training set stay on the device for the
whole ``fit`` (an epoch's shuffle is one gather there): a step copies nothing either way.
The loss kernel leaves the batch's loss sum and hit count on the device, and flags a NaN
loss there for the Adam kernel, which then changes nothing; ``fit`` reads the totals back
once per progress update. Kernels this module does not define run on the host through
``host_fallback`` (correct, but slow).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
import math
import weakref
from typing import NamedTuple

import numba
import numpy as np
from numba import config as numba_config
from numba import cuda, float64
from numba.core import sigutils

from . import numpy_ref
from .shapes import conv_geometry, pool_geometry

ON_DEVICE = True
HELPERS = ("empty_like", "matmul")  # building blocks, not contract kernels
COMPILE_NOTICE = "minicnn: compiling the CUDA kernels (once per process) ..."
# Numba's simulator runs every GPU thread as a Python thread: tests there use small blocks.
SIMULATED = bool(numba_config.ENABLE_CUDASIM)
TILE = 4 if SIMULATED else 16  # matrix-product tile: TILE x TILE threads per block
THREADS = 32 if SIMULATED else 256  # threads per block of the element-wise kernels


def check_available() -> None:
    """Raise RuntimeError unless a CUDA device (or Numba's simulator) is usable."""
    if not cuda.is_available():
        raise RuntimeError("no CUDA device was found (numba.cuda.is_available() is False)")


# ----------------------------------------------------------------------------- memory


def _is_device(a) -> bool:
    return hasattr(a, "copy_to_host")  # numba device arrays (real or simulated)


class _StepBuffers:
    """The device buffers one kind of step asks for, in the order it asks. A step of the
    same model, phase and batch size asks for the same shapes in the same order, so from
    the second step on every request is served by the buffer it got last time: no device
    allocation (cudaMalloc costs far more than a kernel launch). A request that differs
    (another code path) gets a fresh buffer in that place."""

    def __init__(self):
        self.buffers: list = []
        self.next = 0

    def take(self, shape: tuple, dtype):
        i, dtype = self.next, np.dtype(dtype)
        self.next += 1
        if i < len(self.buffers) and self.buffers[i].shape == shape \
                and self.buffers[i].dtype == dtype:
            return self.buffers[i]
        buffer = cuda.device_array(shape, dtype=dtype)
        self.buffers[i:i + 1] = [buffer]
        return buffer


_steps: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # owner -> {kind: buffers}
_active_step: contextvars.ContextVar = contextvars.ContextVar("minicnn_cuda_step", default=None)


@contextlib.contextmanager
def step_buffers(owner, phase: str, batch: int):
    """Serve this step's temporaries from the buffers of the last (owner, phase, batch) step.

    Only temporaries come from here (kernel outputs, uploaded batches); weights and
    optimizer state are made outside steps or by ``zeros_like``, which always allocates.
    """
    buffers = _steps.setdefault(owner, {}).setdefault((phase, batch), _StepBuffers())
    buffers.next = 0
    token = _active_step.set(buffers)
    try:
        yield
    finally:
        _active_step.reset(token)


def _empty(shape, dtype):
    """An uninitialised device array: a step buffer inside ``step_buffers``, else new."""
    shape = tuple(int(d) for d in shape)
    step = _active_step.get()
    return cuda.device_array(shape, dtype=dtype) if step is None else step.take(shape, dtype)


def to_device(a):
    """Host array -> device array (device arrays pass through)."""
    if _is_device(a):
        return a
    a = np.ascontiguousarray(a)
    if _active_step.get() is None:
        return cuda.to_device(a)
    out = _empty(a.shape, a.dtype)
    out.copy_to_device(a)
    return out


def to_host(a) -> np.ndarray:
    return a.copy_to_host() if _is_device(a) else np.asarray(a)


def empty_like(a):
    return _empty(a.shape, a.dtype)


def zeros_like(a):
    """Zeros in new device memory (never a step buffer: optimizer state outlives steps)."""
    out = cuda.device_array(a.shape, dtype=a.dtype)
    _launch(_fill, out.size, _flat(out), 0.0)
    return out


def host_fallback(fn):
    """Run a reference kernel on host copies; arrays in its result go back to the device.

    One host copy per device array, however often it is passed (``add_scaled(p, p, a)``
    must see the same array twice), and each is copied back once (in-place kernels).
    """

    @functools.wraps(fn)
    def run(*args):
        copies = {id(a): (a, to_host(a)) for a in args if _is_device(a)}
        out = fn(*[copies[id(a)][1] if _is_device(a) else a for a in args])
        for dev, host in copies.values():
            dev.copy_to_device(host)
        if isinstance(out, tuple):
            return tuple(to_device(o) if isinstance(o, np.ndarray) else o for o in out)
        return to_device(out) if isinstance(out, np.ndarray) else out

    return run


class _Kernel:
    """A kernel compiled for an explicit signature, once per dtype it meets.

    ``signature`` is numba's type string with ``{t}`` for the dtype of the first array
    argument (of the first tuple's arrays, for Adam's) and ``{k}`` for the length of the
    first tuple argument. A dispatcher compiled for one signature is *specialized*: its
    launch skips typing the arguments and looking up an overload (most of numba-cuda's
    per-launch Python time), and it checks nothing -- an argument of another type would
    be read as the declared one. So under the simulator (which ignores signatures) every
    launch checks its arguments against the declaration instead: the tests run the same
    launches and fail on any mismatch.
    """

    def __init__(self, fn, signature: str):
        self.fn, self.signature = fn, signature
        self.variants: dict = {}  # (dtype, tuple length) -> (dispatcher, argument types)

    def __getitem__(self, config):
        return functools.partial(self._start, config)

    def _start(self, config, *args) -> None:
        first = next(a for a in args if _is_device(a) or isinstance(a, tuple))
        first = first[0] if isinstance(first, tuple) else first
        tuples = [len(a) for a in args if isinstance(a, tuple)]
        key = (np.dtype(first.dtype), tuples[0] if tuples else 0)
        if key not in self.variants:
            signature = self.signature.format(t=key[0].name, k=key[1])
            self.variants[key] = (cuda.jit(signature)(self.fn),
                                  sigutils.normalize_signature(signature)[0])
        dispatcher, declared = self.variants[key]
        if SIMULATED:
            _check_arguments(self.fn.__name__, declared, args)
        dispatcher[config](*args)


def _kernel(signature: str):
    """Decorator: ``fn`` as a ``_Kernel`` compiled for ``signature``."""
    return lambda fn: _Kernel(fn, signature)


def _numba_type(value):
    """The type numba-cuda gives a launch argument (simulated device arrays: their array)."""
    if isinstance(value, tuple):
        return numba.typeof(tuple(v._ary if _is_device(v) else v for v in value))
    return numba.typeof(value._ary if _is_device(value) else value)


def _check_arguments(name: str, declared: tuple, args: tuple) -> None:
    if len(declared) != len(args):
        raise TypeError(f"{name}: {len(args)} arguments, its signature declares "
                        f"{len(declared)}")
    for i, (want, arg) in enumerate(zip(declared, args)):
        got = _numba_type(arg)
        if got != want:
            raise TypeError(f"{name}: argument {i} is {got}, its signature declares {want}")


def _launch(kernel, n: int, *args) -> None:
    """Start ``kernel`` with one thread per element for ``n`` elements.

    (Never cache ``kernel[blocks, threads]``: Numba's simulator configures the kernel
    object in place, so a cached configuration silently takes the last grid size set.)
    """
    kernel[max(1, math.ceil(n / THREADS)), THREADS](*args)


def _view(a, key, make):
    """``make()``, a view of the device array ``a``, made once per ``key`` and kept on ``a``.

    numba-cuda builds every view object (a reshape, a slice) in Python, and a step makes
    dozens; but the arrays of a step live long (weights, step buffers, views of those), so
    from the second step on each view is a dictionary lookup. (A view shares ``a``'s memory:
    it stays right for as long as ``a`` lives, whatever is written into it.)
    """
    views = a.__dict__.setdefault("_minicnn_views", {})
    view = views.get(key)
    if view is None:
        view = views[key] = make()
    return view


def _reshaped(a, *shape):
    shape = tuple(int(d) for d in shape)
    return a if tuple(a.shape) == shape else _view(a, shape, lambda: a.reshape(*shape))


def _part(a, index):
    """a[index] for an int or a slice of the first axis, as a kept view."""
    key = (index.start, index.stop) if isinstance(index, slice) else index
    return _view(a, ("part", key), lambda: a[index])


def _flat(a):
    return _reshaped(a, a.size)


def reshape(a, shape):
    """A kept view (see ``_view``): the layers' reshapes (Flatten, ...) cost a lookup."""
    shape = tuple(int(d) for d in shape)
    if -1 in shape:
        known = math.prod(d for d in shape if d != -1)
        shape = tuple(a.size // known if d == -1 else d for d in shape)
    return _reshaped(a, *shape)


# ----------------------------------------------------------------------------- matmul


@functools.cache
def _matmul_kernel(dtype: np.dtype):
    """The tiled kernel for one dtype (shared memory needs its type at compile time)."""
    from numba import from_dtype, int32

    nb_type = from_dtype(dtype)

    @cuda.jit(device=True)
    def load(x, mask, i, j, trans, masked):
        """op(x)[i, j], or 0 where ``masked`` and op(mask)[i, j] <= 0."""
        v = x[j, i] if trans else x[i, j]
        if masked and (mask[j, i] if trans else mask[i, j]) <= 0:
            return nb_type(0)
        return v

    @cuda.jit(device=True)
    def load_a(a, windows, x, geometry, mask, i, j, trans, masked):
        """op(a)[i, j], where a may be the im2col matrix of x, read on the fly."""
        if not windows:
            return load(a, mask, i, j, trans, masked)
        r, k = (j, i) if trans else (i, j)
        return _window_entry(x, r, k, geometry)

    @_kernel("void({t}[:, ::1], {t}[:, ::1], {t}[:, :, ::1], {t}[:, ::1], int32[::1], boolean, "
             "boolean, int64, {t}[::1], boolean, boolean, {t}[:, ::1], boolean, {t}[:, ::1], "
             "boolean, boolean, boolean, {t}[:, :, :, ::1], UniTuple(int64, 7))")
    def matmul(a, b, out, c, tickets, trans_a, trans_b, k_chunk, bias, has_bias, relu, mask_a,
               masked_a, mask_b, masked_b, ones_row, windows, x, geometry):
        """out[z] (M, N) = op(a)[:, K_z] @ op(b)[K_z, :] over the z-th chunk of the K axis.

        op = transpose when trans_* is set. With one chunk, out[0] is the whole product,
        plus ``bias`` (N,) on every row when ``has_bias``, then max(., 0) when ``relu``
        (the layer's bias and ReLU, fused into the product's epilogue). ``masked_*``:
        entries of a or b whose ``mask_*`` entry is <= 0 load as 0 (a fused ReLU's
        backward). ``ones_row``: op(a) has an extra last row of ones (row M-1 of out).
        ``windows``: a is the im2col matrix of the images x (geometry: kw, sh, sw,
        pad_top, pad_left, out_h, out_w), gathered as it is loaded (implicit GEMM).

        Split K (several chunks): each block writes its partial product to out[z]; the last
        block of a tile to finish (counted in ``tickets``, which it resets to 0) adds the
        partials in z order into c (deterministic) and applies the epilogue there.
        """
        a_tile = cuda.shared.array((TILE, TILE), nb_type)
        b_tile = cuda.shared.array((TILE, TILE), nb_type)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        row = cuda.blockIdx.y * TILE + ty
        col = cuda.blockIdx.x * TILE + tx
        z = cuda.blockIdx.z
        m, n = out.shape[1], out.shape[2]
        k_total = b.shape[1] if trans_b else b.shape[0]
        k_start = z * k_chunk
        k_stop = min(k_start + k_chunk, k_total)
        acc = nb_type(0)
        for t0 in range(k_start, k_stop, TILE):
            k = t0 + tx  # this thread loads op(a)[row, k] ...
            if row < m and k < k_stop:
                if ones_row and row == m - 1:
                    a_tile[ty, tx] = 1
                else:
                    a_tile[ty, tx] = load_a(a, windows, x, geometry, mask_a, row, k, trans_a,
                                            masked_a)
            else:
                a_tile[ty, tx] = 0
            k = t0 + ty  # ... and op(b)[k, col]
            if col < n and k < k_stop:
                b_tile[ty, tx] = load(b, mask_b, k, col, trans_b, masked_b)
            else:
                b_tile[ty, tx] = 0
            cuda.syncthreads()
            for kk in range(TILE):
                acc += a_tile[ty, kk] * b_tile[kk, tx]
            cuda.syncthreads()
        chunks = cuda.gridDim.z
        if chunks == 1:
            if row < m and col < n:
                c[row, col] = _epilogue(acc, bias, col, has_bias, relu)
            return
        if row < m and col < n:
            out[z, row, col] = acc
        cuda.threadfence()  # this block's partial is visible before its ticket is taken
        cuda.syncthreads()
        last = cuda.shared.array(1, int32)
        tile = cuda.blockIdx.y * cuda.gridDim.x + cuda.blockIdx.x
        if tx == 0 and ty == 0:
            last[0] = 1 if cuda.atomic.add(tickets, tile, 1) == chunks - 1 else 0
        cuda.syncthreads()
        if last[0]:
            if row < m and col < n:
                total = out[0, row, col]
                for zz in range(1, chunks):
                    total += out[zz, row, col]
                c[row, col] = _epilogue(total, bias, col, has_bias, relu)
            if tx == 0 and ty == 0:
                tickets[tile] = 0

    return matmul


@cuda.jit(device=True)
def _epilogue(value, bias, col, has_bias, relu):
    """A product's entry + the bias of its column, then the ReLU when asked."""
    if has_bias:
        value += bias[col]
    return 0 if relu and value < 0 else value


_tickets = []  # [zeroed int32 device array]: the split-K tile counters, grown on demand


def _split_tickets(tiles: int):
    """Per-tile counters of the split-K kernels, all 0 between launches (each last block
    resets its own). Made once (and again only when a product has more tiles)."""
    if not _tickets or _tickets[0].size < tiles:
        _tickets[:] = [cuda.to_device(np.zeros(max(tiles, 1024), dtype=np.int32))]
    return _tickets[0]


TARGET_BLOCKS = 256  # enough blocks to fill a large GPU (an H100 has 132 SMs)


def matmul(a, b, trans_a: bool = False, trans_b: bool = False, bias=None, relu: bool = False,
           mask_a=None, mask_b=None, ones_row: bool = False):
    """op(a) @ op(b) (+ bias on every row, then max(., 0) if relu) on the device.

    ``mask_a`` / ``mask_b`` (shaped like a / b): entries whose mask is <= 0 count as 0 --
    the backward of a fused ReLU (mask = its output), applied as the operand is loaded.
    ``ones_row``: op(a) gets an extra row of ones, so the result gets an extra last row,
    the column sums of op(b): a layer's bias gradient from its weight-gradient product.

    A product with a small output but a long K axis (the kernel gradients: few filters,
    many pixels) would give too few blocks to fill the GPU, so K is split into chunks
    computed by separate blocks and summed by the last of them (split-K, one launch).
    """
    windows = isinstance(a, Windows)
    m = (a.shape[1] if trans_a else a.shape[0]) + (1 if ones_row else 0)
    n = b.shape[0] if trans_b else b.shape[1]
    k = a.shape[0] if trans_a else a.shape[1]
    c = _empty((m, n), a.dtype)
    tiles = math.ceil(n / TILE) * math.ceil(m / TILE)
    splits = max(1, min(TARGET_BLOCKS // tiles, k // (8 * TILE)))
    k_chunk = math.ceil(k / splits / TILE) * TILE
    splits = math.ceil(k / k_chunk)
    out = _reshaped(c, 1, m, n) if splits == 1 else _empty((splits, m, n), a.dtype)
    blocks = (math.ceil(n / TILE), math.ceil(m / TILE), splits)
    has_bias = bias is not None
    bias = bias if has_bias else _part(c, 0)  # a placeholder the kernel never reads
    # Placeholders of the right types for the arguments this product does not use:
    matrix = _part(out, 0) if windows else a
    images, geometry = (a.x, a.geometry) if windows else (_reshaped(out, 1, *out.shape),
                                                          (0,) * 7)
    _matmul_kernel(np.dtype(a.dtype))[blocks, (TILE, TILE)](
        matrix, b, out, c, _split_tickets(blocks[0] * blocks[1]), trans_a, trans_b, k_chunk,
        bias, has_bias, relu, matrix if mask_a is None else mask_a, mask_a is not None,
        b if mask_b is None else mask_b, mask_b is not None, ones_row, windows, images, geometry)
    return c


# ----------------------------------------------------------------------------- conv


class Windows(NamedTuple):
    """The im2col matrix of a convolution's input, (N*OH*OW, kh*kw*C), never built: the
    matrix product reads its entries straight from the images (implicit GEMM)."""

    x: object  # (N, H, W, C) device images
    kh: int
    kw: int
    stride: tuple
    pad_top: int
    pad_left: int
    out_h: int
    out_w: int

    @property
    def shape(self) -> tuple[int, int]:
        n, _, _, c = self.x.shape
        return n * self.out_h * self.out_w, self.kh * self.kw * c

    @property
    def dtype(self):
        return self.x.dtype

    @property
    def geometry(self) -> tuple:
        return (self.kw, self.stride[0], self.stride[1], self.pad_top, self.pad_left, self.out_h,
                self.out_w)


@cuda.jit(device=True)
def _window_entry(x, r, k, geometry):
    """cols[r, k] of im2col(x): row r = (n, i, j), column k = (di, dj, c); 0 off the image."""
    kw, sh, sw, pad_top, pad_left, out_h, out_w = geometry
    c = x.shape[3]
    b, ij = r // (out_h * out_w), r % (out_h * out_w)
    tap = k // c
    y = (ij // out_w) * sh + tap // kw - pad_top
    xx = (ij % out_w) * sw + tap % kw - pad_left
    if 0 <= y < x.shape[1] and 0 <= xx < x.shape[2]:
        return x[b, y, xx, k % c]
    return x[0, 0, 0, 0] * 0


@_kernel("void({t}[:, ::1], {t}[:, ::1], boolean, {t}[:, :, :, ::1], {t}[:, :, :, ::1], int64, "
        "int64, int64, int64, int64, int64)")
def _conv_input_gradient(dy2, relu2, masked, w, dx, sh, sw, pad_top, pad_left, out_h, out_w):
    """One thread per input pixel: dx[b, y, x, c] = sum over the windows that read it of
    <dy of that window's output pixel, W[tap, c, :]> -- (dy W^T) and col2im in one pass,
    dy through the fused ReLU when ``masked`` (no atomics, no window matrix)."""
    idx = cuda.grid(1)
    if idx >= dx.size:
        return
    kh, kw, c, f = w.shape
    b, y, xx, ch = _unravel_nhwc(idx, dx.shape[1], dx.shape[2], c)
    acc = w[0, 0, 0, 0] * 0
    for di in range(kh):
        ty = y + pad_top - di  # = i * sh for the output row i whose window has tap di here
        if ty < 0 or ty % sh != 0 or ty // sh >= out_h:
            continue
        for dj in range(kw):
            tx = xx + pad_left - dj
            if tx < 0 or tx % sw != 0 or tx // sw >= out_w:
                continue
            row = (b * out_h + ty // sh) * out_w + tx // sw
            for u in range(f):
                if not masked or relu2[row, u] > 0:
                    acc += dy2[row, u] * w[di, dj, ch, u]
    dx[b, y, xx, ch] = acc


def _windows(x, w, stride, padding):
    kh, kw, _, _ = w.shape
    g = conv_geometry(x.shape[1], x.shape[2], kh, kw, stride, padding)
    return Windows(x, kh, kw, tuple(stride), g.pad_top, g.pad_left, g.out_h, g.out_w), g


def conv2d_forward(x, w, b, stride, padding, relu=False):
    windows, g = _windows(x, w, stride, padding)
    y = matmul(windows, _rows(w, w.shape[3]), bias=b, relu=relu)
    return _reshaped(y, x.shape[0], g.out_h, g.out_w, w.shape[3])


def _rows(a, f: int):
    return None if a is None else _reshaped(a, a.size // f, f)


def _weight_gradients(inputs, dy2, relu2, kernel_shape):
    """dW (kernel_shape) and db from one product: [inputs | 1]^T (dy through the ReLU)."""
    grads = matmul(inputs, dy2, trans_a=True, mask_b=relu2, ones_row=True)
    k = grads.shape[0] - 1
    return _reshaped(_part(grads, slice(0, k)), *kernel_shape), _part(grads, k)


def conv2d_backward(x, w, dy, stride, padding, need_dx=True, relu_output=None):
    f = w.shape[3]
    windows, g = _windows(x, w, stride, padding)
    dy2, relu2 = _rows(dy, f), _rows(relu_output, f)
    dw, db = _weight_gradients(windows, dy2, relu2, w.shape)
    if not need_dx:
        return None, dw, db
    dx = _empty(x.shape, x.dtype)
    _launch(_conv_input_gradient, dx.size, dy2, dy2 if relu2 is None else relu2,
            relu2 is not None, w, dx, stride[0], stride[1], g.pad_top, g.pad_left, g.out_h,
            g.out_w)
    return dx, dw, db


# ----------------------------------------------------------------------------- pooling


@cuda.jit(device=True)
def _unravel_nhwc(idx, h, w, c):
    """Flat index of a C-contiguous (N, H, W, C) array -> (n, y, x, channel)."""
    return idx // (c * w * h), (idx // (c * w)) % h, (idx // c) % w, idx % c


@_kernel("void({t}[:, :, :, ::1], {t}[:, :, :, ::1], int32[:, :, :, ::1], int64, int64, int64, "
        "int64)")
def _maxpool_forward(x, y, arg, ph, pw, sh, sw):
    idx = cuda.grid(1)
    if idx >= y.size:
        return
    b, i, j, ch = _unravel_nhwc(idx, y.shape[1], y.shape[2], y.shape[3])
    best = x[b, i * sh, j * sw, ch]
    best_k = 0
    for di in range(ph):
        for dj in range(pw):
            v = x[b, i * sh + di, j * sw + dj, ch]
            if v > best or (v != v and best == best):  # a NaN wins, as in np.argmax
                best = v
                best_k = di * pw + dj
    y[b, i, j, ch] = best
    arg[b, i, j, ch] = best_k


@_kernel("void({t}[:, :, :, ::1], int32[:, :, :, ::1], {t}[:, :, :, ::1], int64, int64, int64)")
def _maxpool_backward(dy, arg, dx, pw, sh, sw):
    """Scatter each output gradient onto its winner (atomic: windows may overlap)."""
    idx = cuda.grid(1)
    if idx >= dy.size:
        return
    b, i, j, ch = _unravel_nhwc(idx, dy.shape[1], dy.shape[2], dy.shape[3])
    k = arg[b, i, j, ch]
    cuda.atomic.add(dx, (b, i * sh + k // pw, j * sw + k % pw, ch), dy[b, i, j, ch])


def maxpool2d_forward(x, pool, stride, padding="valid"):
    if padding != "valid":  # the -inf padding lives in the reference
        return host_fallback(numpy_ref.maxpool2d_forward)(x, pool, stride, padding)
    n, h, w, c = x.shape
    oh, ow = pool_geometry(h, w, pool, stride)
    y = _empty((n, oh, ow, c), x.dtype)
    arg = _empty((n, oh, ow, c), np.int32)
    _launch(_maxpool_forward, y.size, x, y, arg, pool[0], pool[1], stride[0], stride[1])
    return y, arg


@_kernel("void({t}[:, :, :, ::1], int32[:, :, :, ::1], {t}[:, :, :, ::1], int64, int64, int64, "
        "int64)")
def _maxpool_backward_disjoint(dy, arg, dx, ph, pw, sh, sw):
    """Windows that do not overlap: each input pixel lies in at most one window, so it
    gathers its gradient (no zero-fill, no atomics)."""
    idx = cuda.grid(1)
    if idx >= dx.size:
        return
    b, y, xx, ch = _unravel_nhwc(idx, dx.shape[1], dx.shape[2], dx.shape[3])
    i, j = y // sh, xx // sw
    di, dj = y - i * sh, xx - j * sw
    inside = i < dy.shape[1] and j < dy.shape[2] and di < ph and dj < pw
    if inside and arg[b, i, j, ch] == di * pw + dj:
        dx[b, y, xx, ch] = dy[b, i, j, ch]
    else:
        dx[b, y, xx, ch] = 0


def maxpool2d_backward(dy, cache, x_shape, pool, stride, padding="valid"):
    if padding != "valid":
        return host_fallback(numpy_ref.maxpool2d_backward)(dy, cache, x_shape, pool, stride,
                                                           padding)
    dx = _empty(x_shape, dy.dtype)
    if stride[0] >= pool[0] and stride[1] >= pool[1]:
        _launch(_maxpool_backward_disjoint, dx.size, dy, cache, dx, pool[0], pool[1],
                stride[0], stride[1])
    else:
        _launch(_fill, dx.size, _flat(dx), 0.0)
        _launch(_maxpool_backward, dy.size, dy, cache, dx, pool[1], stride[0], stride[1])
    return dx


# ----------------------------------------------------------------------------- dense


def dense_forward(x, w, b, relu=False):
    return matmul(x, w, bias=b, relu=relu)


def dense_backward(x, w, dy, need_dx=True, relu_output=None):
    dw, db = _weight_gradients(x, dy, relu_output, w.shape)
    dx = matmul(dy, w, trans_b=True, mask_a=relu_output) if need_dx else None
    return dx, dw, db


# ----------------------------------------------------------------------------- element-wise


@_kernel("void({t}[::1], float64)")
def _fill(a, value):
    idx = cuda.grid(1)
    if idx < a.size:
        a[idx] = value


@_kernel("void({t}[::1], {t}[::1], int64)")
def _activation(z, a, kind):
    """kind 0: relu, 1: sigmoid (computed from e^-|z|, never overflowing)."""
    idx = cuda.grid(1)
    if idx >= z.size:
        return
    v = z[idx]
    if kind == 0:
        a[idx] = v if v > 0 else 0
    elif v >= 0:
        a[idx] = 1 / (1 + math.exp(-v))
    else:
        e = math.exp(v)
        a[idx] = e / (1 + e)


@_kernel("void({t}[::1], {t}[::1], {t}[::1], int64)")
def _activation_backward(a, da, dz, kind):
    idx = cuda.grid(1)
    if idx >= a.size:
        return
    if kind == 0:
        dz[idx] = da[idx] if a[idx] > 0 else 0
    else:
        dz[idx] = da[idx] * a[idx] * (1 - a[idx])


@_kernel("void({t}[:, ::1], {t}[:, ::1])")
def _softmax_rows(z, a):
    r = cuda.grid(1)
    if r >= z.shape[0]:
        return
    top = z[r, 0]
    for k in range(1, z.shape[1]):
        top = max(top, z[r, k])
    total = z[r, 0] * 0
    for k in range(z.shape[1]):
        a[r, k] = math.exp(z[r, k] - top)
        total += a[r, k]
    for k in range(z.shape[1]):
        a[r, k] /= total


_KINDS = {"relu": 0, "sigmoid": 1}


def activation_forward(name, z):
    if name == "linear":
        return z
    if name not in _KINDS and name != "softmax":  # tanh, elu, ...: the reference, on the host
        return host_fallback(numpy_ref.activation_forward)(name, z)
    a = empty_like(z)
    if name == "softmax":
        k = z.shape[len(z.shape) - 1]  # (simulated device arrays reject shape[-1])
        rows = _rows(z, k)
        _launch(_softmax_rows, rows.shape[0], rows, _rows(a, k))
    else:
        _launch(_activation, z.size, _flat(z), _flat(a), _KINDS[name])
    return a


def activation_backward(name, z, a, da):
    if name not in _KINDS:
        return host_fallback(numpy_ref.activation_backward)(name, z, a, da)
    dz = empty_like(a)
    _launch(_activation_backward, a.size, _flat(a), _flat(da), _flat(dz), _KINDS[name])
    return dz


# ----------------------------------------------------------------------------- loss, metrics


@cuda.jit(device=True)
def _is_correct(pred, y, r, threshold):
    """Row r's class is right: argmax of pred == argmax of one-hot y (first maximum wins);
    one column: (pred > threshold) == (y > 0.5)."""
    if pred.shape[1] == 1:
        return (pred[r, 0] > threshold) == (y[r, 0] > 0.5)
    best, best_y = 0, 0
    for j in range(1, pred.shape[1]):
        if pred[r, j] > pred[r, best]:
            best = j
        if y[r, j] > y[r, best_y]:
            best_y = j
    return best == best_y


@cuda.jit(device=True)
def _softmax_cross_entropy_row(z, y, dz, r):
    """Row r: dz[r] = (softmax(z_r) - y_r) / N; returns its loss logsumexp(z_r) - <y_r, z_r>."""
    n, k = z.shape
    top = z[r, 0]
    for j in range(1, k):
        top = max(top, z[r, j])
    total = z[r, 0] * 0
    for j in range(k):
        total += math.exp(z[r, j] - top)
    log_total = math.log(total) + top
    row_loss = total * 0
    for j in range(k):
        row_loss += y[r, j] * (log_total - z[r, j])
        dz[r, j] = (math.exp(z[r, j] - log_total) - y[r, j]) / n
    return row_loss


@_kernel("void({t}[:, ::1], {t}[:, ::1], {t}[:, ::1], float64[::1])")
def _softmax_cross_entropy(z, y, dz, losses):
    """One thread per row: its loss into losses[r] (float64), its gradient into dz."""
    r = cuda.grid(1)
    if r < z.shape[0]:
        losses[r] = _softmax_cross_entropy_row(z, y, dz, r)


@_kernel("void({t}[:, ::1], {t}[:, ::1], {t}[:, ::1], float64[::1], int32[::1])")
def _softmax_cross_entropy_totals(z, y, dz, totals, halted):
    """One block: thread t takes rows t, t + THREADS, ...; then the block adds up the
    losses and hits in shared memory (a fixed tree: the same sum every run) into totals =
    (loss sum, hits); halted[0] = 1 if the loss sum is NaN or inf."""
    partial = cuda.shared.array((THREADS, 2), float64)
    t = cuda.threadIdx.x
    loss, hits = 0.0, 0.0
    for r in range(t, z.shape[0], THREADS):
        loss += _softmax_cross_entropy_row(z, y, dz, r)
        hits += 1.0 if _is_correct(z, y, r, 0.0) else 0.0
    partial[t, 0], partial[t, 1] = loss, hits
    cuda.syncthreads()
    half = THREADS // 2
    while half > 0:
        if t < half:
            partial[t, 0] += partial[t + half, 0]
            partial[t, 1] += partial[t + half, 1]
        cuda.syncthreads()
        half //= 2
    if t == 0:
        totals[0], totals[1] = partial[0, 0], partial[0, 1]
        if math.isnan(partial[0, 0]) or math.isinf(partial[0, 0]):
            halted[0] = 1


def softmax_cross_entropy_totals(logits, y, totals, halted):
    """Loss sum and hits into ``totals`` on the device, one launch, nothing read back."""
    dz = empty_like(logits)
    _softmax_cross_entropy_totals[1, THREADS](logits, y, dz, totals, halted)
    return dz


def softmax_cross_entropy(logits, y):
    """Per-row losses and the gradient, both on the device (the Loss takes their mean)."""
    dz = empty_like(logits)
    losses = _empty((logits.shape[0],), np.float64)
    _launch(_softmax_cross_entropy, logits.shape[0], logits, y, dz, losses)
    return losses, dz


@_kernel("void({t}[:, ::1], {t}[:, ::1], float64, int8[::1])")
def _count_correct(pred, y, threshold, hits):
    r = cuda.grid(1)
    if r < pred.shape[0]:
        hits[r] = 1 if _is_correct(pred, y, r, threshold) else 0


def count_correct(pred, y, threshold: float = 0.5) -> int:
    hits = _empty((pred.shape[0],), np.int8)
    _launch(_count_correct, pred.shape[0], pred, y, threshold, hits)
    return int(hits.copy_to_host().sum())


# ----------------------------------------------------------------------------- optimizers


@cuda.jit(device=True)
def _flushed(x, tiny):
    """x, or 0 where |x| is below the smallest normal float (numpy_ref.flush_to_zero)."""
    return x - x if abs(x) < tiny else x


@_kernel("void(UniTuple({t}[::1], {k}), UniTuple({t}[::1], {k}), UniTuple({t}[::1], {k}), "
        "UniTuple({t}[::1], {k}), UniTuple(int64, {k}), float64, float64, float64, float64, "
        "float64, int32[::1])")
def _adam(ps, gs, ms, vs, ends, lr_t, beta_1, beta_2, epsilon, tiny, halted):
    """Adam over several parameters in one launch: thread i updates element i of their
    concatenation; ``ends`` are the running totals of their sizes (flat arrays in tuples).
    Nothing changes while halted[0] is set (a NaN loss, flagged by the loss kernel).
    m and v are flushed to zero below the smallest normal float, as in the reference."""
    i = cuda.grid(1)
    if i >= ends[len(ends) - 1] or halted[0] != 0:
        return
    k = 0
    while i >= ends[k]:
        k += 1
    j = i - (ends[k - 1] if k > 0 else 0)
    p, g, m, v = ps[k], gs[k], ms[k], vs[k]
    m[j] = _flushed(m[j] + (1 - beta_1) * (g[j] - m[j]), tiny)
    v[j] = _flushed(v[j] + (1 - beta_2) * (g[j] * g[j] - v[j]), tiny)
    p[j] -= lr_t * m[j] / (math.sqrt(v[j]) + epsilon)


@_kernel("void({t}[::1], {t}[::1], {t}[::1], float64, float64, boolean, float64)")
def _sgd(p, g, velocity, lr, momentum, use_momentum, tiny):
    i = cuda.grid(1)
    if i < p.size:
        if use_momentum:
            velocity[i] = _flushed(momentum * velocity[i] - lr * g[i], tiny)
            p[i] += velocity[i]
        else:
            p[i] -= lr * g[i]


def adam_update(p, g, m, v, lr_t, beta_1, beta_2, epsilon):
    adam_update_many([p], [g], [m], [v], lr_t, beta_1, beta_2, epsilon)


_not_halted = []  # [a (1,) int32 zero on the device]: the flag when none is given


def adam_update_many(params, grads, ms, vs, lr_t, beta_1, beta_2, epsilon, halted=None):
    """adam_update of every parameter in one launch (one kernel per step, not per weight);
    none while ``halted`` is set, checked by the kernel (the host never waits for it)."""
    if halted is None:
        if not _not_halted:
            _not_halted.append(cuda.to_device(np.zeros(1, np.int32)))
        halted = _not_halted[0]
    ends = tuple(itertools.accumulate(int(p.size) for p in params))
    flat = [tuple(_flat(a) for a in arrays) for arrays in (params, grads, ms, vs)]
    tiny = float(np.finfo(params[0].dtype).tiny)
    _launch(_adam, ends[-1], *flat, ends, lr_t, beta_1, beta_2, epsilon, tiny, halted)


@_kernel("void({t}[::1], int64[::1], {t}[::1], int64)")
def _take_rows(a, rows, out, row_size):
    """One thread per element of out (flat): out[i] = a[rows[i]], rows of row_size values."""
    idx = cuda.grid(1)
    if idx < out.size:
        i = idx // row_size
        out[idx] = a[rows[i] * row_size + idx % row_size]


def take_rows(a, rows, out):
    row_size = out.size // max(out.shape[0], 1)
    _launch(_take_rows, out.size, _flat(a), rows, _flat(out), row_size)
    return out


def sgd_update(p, g, velocity, lr, momentum, nesterov=False):
    if nesterov:
        return host_fallback(numpy_ref.sgd_update)(p, g, velocity, lr, momentum, nesterov)
    v = _flat(velocity) if velocity is not None else _flat(p)  # unused without momentum
    _launch(_sgd, p.size, _flat(p), _flat(g), v, lr, momentum, momentum != 0,
            float(np.finfo(p.dtype).tiny))
