"""Adam over every parameter in one launch, SGD, and the gather of an epoch's shuffled rows."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
import math
import weakref

import numpy as np
from numba import cuda

from ..reference import optimizers as ref_optimizers
from .launch import flat_view, is_device, jit_kernel, run_kernel
from .memory import host_fallback

# The step's flag ``halted`` ((1,) int32 on the device): 0 while all goes well, 1 when the
# loss kernel found a NaN or inf loss, KEPT + s when the update of step s (``stamp``: the
# optimizer's count after it) would have made values not finite. The update kernels of
# step s change nothing while it says 1 or another step's KEPT (nothing after a bad step
# is applied), and write every value they replace to its array's backup first
# (``StepBackups``), so that the tally can undo step s whole when it reads KEPT + s.
KEPT = 2


@cuda.jit(device=True)
def _skips(halted, stamp):
    """Step ``stamp``'s updates do nothing: its loss, or an earlier step's update, went bad
    (its own KEPT is written by the update's threads and must not stop the rest of it)."""
    return halted == 1 or (halted >= KEPT and halted != KEPT + stamp)


@cuda.jit(device=True)
def _flushed(x, tiny):
    """x, or 0 where |x| is below the smallest normal float (the reference's flush_to_zero)."""
    return x - x if abs(x) < tiny else x


@jit_kernel("void(UniTuple({t}[::1], {k}), UniTuple({t}[::1], {k}), UniTuple({t}[::1], {k}), "
        "UniTuple({t}[::1], {k}), UniTuple({t}[::1], {k}), UniTuple({t}[::1], {k}), "
        "UniTuple({t}[::1], {k}), UniTuple(int64, {k}), UniTuple(float64, 5), int32[::1], "
        "int64)")
def _adam(ps, gs, ms, vs, saved_ps, saved_ms, saved_vs, ends, hyper, halted, stamp):
    """Adam over several parameters in one launch: thread i updates element i of their
    concatenation; ``ends`` are the running totals of their sizes (flat arrays in tuples),
    ``hyper`` (lr_t, beta_1, beta_2, epsilon, tiny). The old values go to the ``saved_``
    arrays first; nothing changes if ``_skips``. m and v are flushed to zero below the
    smallest normal float, as in the reference."""
    i = cuda.grid(1)
    if i >= ends[len(ends) - 1] or _skips(halted[0], stamp):
        return
    lr_t, beta_1, beta_2, epsilon, tiny = hyper
    k = 0
    while i >= ends[k]:
        k += 1
    j = i - (ends[k - 1] if k > 0 else 0)
    p, g, m, v = ps[k], gs[k], ms[k], vs[k]
    old_p, old_m, old_v = p[j], m[j], v[j]
    saved_ps[k][j], saved_ms[k][j], saved_vs[k][j] = old_p, old_m, old_v
    m[j] = _flushed(old_m + (1 - beta_1) * (g[j] - old_m), tiny)
    v[j] = _flushed(old_v + (1 - beta_2) * (g[j] * g[j] - old_v), tiny)
    p[j] = old_p - lr_t * m[j] / (math.sqrt(v[j]) + epsilon)
    if not (math.isfinite(m[j]) and math.isfinite(v[j]) and math.isfinite(p[j])):
        # keep_finite (as stored, in the arrays' dtype): the old values, and the flag
        p[j], m[j], v[j] = old_p, old_m, old_v
        halted[0] = KEPT + stamp


@jit_kernel("void({t}[::1], {t}[::1], {t}[::1], {t}[::1], {t}[::1], UniTuple(float64, 3), "
            "boolean, int32[::1], int64)")
def _sgd(p, g, velocity, saved_p, saved_velocity, hyper, use_momentum, halted, stamp):
    """SGD (``hyper``: lr, momentum, tiny), saving and skipping as _adam does."""
    i = cuda.grid(1)
    if i < p.size and not _skips(halted[0], stamp):
        lr, momentum, tiny = hyper
        old_p, old_velocity = p[i], velocity[i]
        saved_p[i], saved_velocity[i] = old_p, old_velocity
        if use_momentum:
            velocity[i] = _flushed(momentum * old_velocity - lr * g[i], tiny)
            p[i] = old_p + velocity[i]
        else:
            p[i] = old_p - lr * g[i]
        if not (math.isfinite(p[i]) and math.isfinite(velocity[i])):
            p[i], velocity[i] = old_p, old_velocity
            halted[0] = KEPT + stamp


# (id(a), n) -> (a weak reference to a, a's n-th backup buffer of a step), for every
# array an update saved: kept from step to step and from tally to tally (train_on_batch
# makes one per call), dropped with the array
_BUFFERS: dict = {}


def _backup_buffer(a, n: int):
    key = (id(a), n)
    kept = _BUFFERS.get(key)
    if kept is None or kept[0]() is not a:
        owner = weakref.ref(a, lambda _, key=key: _BUFFERS.pop(key, None))
        kept = _BUFFERS[key] = (owner, cuda.device_array(a.shape, a.dtype))
    return kept[1]


class StepBackups:
    """What one step's updates replaced (device copies), to undo the step whole.

    ``begin(stamp)`` starts step ``stamp``; ``backup(a)`` is the buffer an update of ``a``
    saves a's old values to: the first update of ``a`` in the step gets the buffer ``undo``
    restores, a second one (AdamW's decay, then Adam) a buffer of its own, its old values
    being the step's already."""

    def __init__(self):
        self._steps: dict[int, list] = {}  # stamp -> [(a, backup)], steps since ``forget``
        self.stamp, self._uses = 0, {}  # uses: id(a) -> backups of a this step, less one

    def begin(self, stamp: int) -> None:
        self.stamp, self._uses = stamp, {}
        self._steps[stamp] = []

    def backup(self, a):
        n = self._uses[id(a)] = self._uses.get(id(a), -1) + 1
        buffer = _backup_buffer(a, n)
        if n == 0:
            self._steps.setdefault(self.stamp, []).append((a, buffer))
        return buffer

    def undo(self, stamp: int) -> None:
        """Put back what step ``stamp``'s updates replaced."""
        for a, saved in self._steps.get(stamp, []):
            a.copy_to_device(saved)

    def forget(self) -> None:
        """Drop the record of the steps so far (read back as good)."""
        self._steps = {}


# The step being applied: its flag ((1,) int32 on the device) and backups, set by
# ``guarded_update``; the Adam and SGD kernels read the flag on the device, the other
# updates (host fallbacks) read it back.
STEP: contextvars.ContextVar = contextvars.ContextVar("minicnn_cuda_step", default=None)


@contextlib.contextmanager
def guarded_update(halted, backups: StepBackups | None = None):
    """The optimizer's update of a step whose loss kernel may have set ``halted``, saving
    what it replaces to ``backups`` (default: ones of its own, stamp 0). It may always go
    ahead (the host does not wait for the GPU): the update kernels skip their work while
    the flag says so."""
    token = STEP.set((halted, StepBackups() if backups is None else backups))
    try:
        yield True
    finally:
        STEP.reset(token)


_spare_flag = []  # [a (1,) int32 on the device]: the flag outside guarded_update


def _step():
    """The step's flag and backups (``guarded_update``), or outside a step a spare flag,
    cleared, and backups of its own."""
    step = STEP.get()
    if step is not None:
        return step
    if not _spare_flag:
        _spare_flag.append(cuda.to_device(np.zeros(1, np.int32)))
    _spare_flag[0].copy_to_device(np.zeros(1, np.int32))
    return _spare_flag[0], StepBackups()


def unless_halted(update, state: bool = False):
    """A host-fallback update that, like the kernels, does nothing while the step's flag
    (read back) says so, saves the device arrays it is given, and sets the flag to KEPT +
    stamp when it kept elements. ``state``: an update of a layer's state (BatchNorm's
    moving averages), which runs only after a step's update went well. Returns 0, as every
    update here (the flag says what it kept)."""

    @functools.wraps(update)
    def run(*args):
        halted, backups = _step()
        flag = int(halted.copy_to_host()[0])
        if flag == 0 or (not state and flag == KEPT + backups.stamp):
            for a in {id(a): a for a in args if is_device(a)}.values():
                backups.backup(a).copy_to_device(a)
            if update(*args):
                halted.copy_to_device(np.array([KEPT + backups.stamp], np.int32))
        return 0

    return run


def adam_update(p, g, m, v, lr_t, beta_1, beta_2, epsilon):
    return adam_update_many([p], [g], [m], [v], lr_t, beta_1, beta_2, epsilon)


def adam_update_many(params, grads, ms, vs, lr_t, beta_1, beta_2, epsilon):
    """adam_update of every parameter in one launch (one kernel per step, not per weight);
    none while the step's flag (``guarded_update``) says so, checked by the kernel."""
    halted, backups = _step()
    ends = tuple(itertools.accumulate(int(p.size) for p in params))
    flat = [tuple(flat_view(a) for a in arrays) for arrays in (params, grads, ms, vs)]
    saved = [tuple(flat_view(backups.backup(a)) for a in arrays) for arrays in (params, ms, vs)]
    tiny = float(np.finfo(params[0].dtype).tiny)
    run_kernel(_adam, ends[-1], *flat, *saved, ends, (lr_t, beta_1, beta_2, epsilon, tiny),
               halted, backups.stamp)
    return 0  # what it kept, the flag says


@jit_kernel("void({t}[::1], int64[::1], {t}[::1], int64)")
def _take_rows(a, rows, out, row_size):
    """One thread per element of out (flat): out[i] = a[rows[i]], rows of row_size values."""
    idx = cuda.grid(1)
    if idx < out.size:
        i = idx // row_size
        out[idx] = a[rows[i] * row_size + idx % row_size]


def take_rows(a, rows, out):
    row_size = out.size // max(out.shape[0], 1)
    run_kernel(_take_rows, out.size, flat_view(a), rows, flat_view(out), row_size)
    return out


def sgd_update(p, g, velocity, lr, momentum, nesterov=False):
    if nesterov:
        return unless_halted(host_fallback(ref_optimizers.sgd_update))(
            p, g, velocity, lr, momentum, nesterov)
    halted, backups = _step()
    # without momentum the velocity is unused: p stands in for it (and for its backup)
    v = flat_view(velocity) if velocity is not None else flat_view(p)
    saved_p = flat_view(backups.backup(p))
    saved_v = flat_view(backups.backup(velocity)) if velocity is not None else saved_p
    run_kernel(_sgd, p.size, flat_view(p), flat_view(g), v, saved_p, saved_v,
               (lr, momentum, float(np.finfo(p.dtype).tiny)), momentum != 0, halted,
               backups.stamp)
    return 0  # what it kept, the flag says
