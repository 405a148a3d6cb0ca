"""Check a learner's kernels against the reference: ``python -m minicnn.check FILE.py``.

Every function in FILE whose name is a kernel of the contract (``backends/contract.py``)
that this checker knows is run on cases Hypothesis draws (odd sizes, batch 1, strides,
paddings, float32 and float64) and on fixed extreme ones (logits of 1000): its forward
output must equal the reference's within float tolerance, its backward central differences
of the reference's forward (float64), an update's changes the reference's. Every call must
also behave as the model needs (``guarded``): inputs left as they were, new arrays of the
reference's types and dtypes returned, an update's count of kept elements. A merge's
backward (Add, Concatenate) is also checked where it works: a small residual or two-branch
block, trained through the file's kernels, gradient-checked weight by weight
(``_check_block``). Per kernel it prints PASS, or the first failing case it could shrink
to: the inputs' shapes, the largest difference and where. It exits 0 only when every kernel
it found passes, 1 when one fails, 2 when the file cannot be checked (no kernel in it, a
misspelt name) and 3 when it cannot even be imported (a syntax error: one line says where).
The file runs in a process of its own (``supervise``): a case that takes longer than
``--time-limit`` seconds, or that ends the process, is a FAIL naming the case.

The reference kernels are the solutions (``minicnn/backends/reference/``); ``exercises/``
has a file per kernel to start from. To train with your kernels once they pass:
``with minicnn.use_backend(module): model.fit(...)`` (what the module lacks is the
reference's).
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import inspect
import os
import select
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .backends.contract import KERNELS
from .backends.reference import NumpyBackend
from .backends.results import OPAQUE_OUTPUTS, kind_of, result_mismatch
from .gradcheck import numerical_gradient

REFERENCE = NumpyBackend()
TOLERANCE = {np.float32: 2e-4, np.float64: 1e-7}


class Mismatch(AssertionError):
    """A kernel's result differs from the reference's: what, by how much and where."""


def _compare(name: str, got, want, dtype, floor: float = 1.0) -> None:
    """got equals want within the dtype's tolerance, relative to want's largest entry (or to
    ``floor``, when that is larger)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise Mismatch(f"{name} has shape {got.shape}, expected {want.shape}")
    if got.size == 0:
        return
    diff = np.abs(got - want)
    diff[np.isnan(got) != np.isnan(want)] = np.inf
    tol = TOLERANCE[dtype] * max(floor, float(np.nanmax(np.abs(want))))
    worst = int(np.nanargmax(diff)) if not np.isnan(diff).all() else 0
    if not diff.flat[worst] <= tol:
        where = [int(i) for i in np.unravel_index(worst, got.shape)]
        raise Mismatch(f"{name}: largest difference {diff.flat[worst]:.3g} at {name}"
                       f"{where} (got {got.flat[worst]:.10g}, expected "
                       f"{want.flat[worst]:.10g}; tolerance {tol:.2g})")


def _numeric(f: Callable[[np.ndarray], float], x: np.ndarray) -> np.ndarray:
    """d f / d x by central differences, on a float64 copy."""
    return numerical_gradient(f, np.array(x, dtype=np.float64))


# ----------------------------------------------------------------------------- cases

dtypes = st.sampled_from([np.float32, np.float64])
FLOAT64 = st.just(np.float64)  # backward passes are checked by central differences
seeds = st.integers(0, 2**16)


@st.composite
def conv_cases(draw, dtype=dtypes):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    h, w = draw(st.integers(kh, 6)), draw(st.integers(kw, 6))
    return {"x": (draw(st.integers(1, 2)), h, w, draw(st.integers(1, 3))),
            "w": (kh, kw, None, draw(st.integers(1, 3))), "stride": stride,
            "padding": draw(st.sampled_from(["valid", "same"])), "bias": draw(st.booleans()),
            "dtype": draw(dtype), "seed": draw(seeds)}


@st.composite
def pool_cases(draw, dtype=dtypes):
    pool = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    h, w = draw(st.integers(pool[0], 6)), draw(st.integers(pool[1], 6))
    return {"x": (draw(st.integers(1, 2)), h, w, draw(st.integers(1, 3))), "pool": pool,
            "stride": stride, "padding": draw(st.sampled_from(["valid", "same"])),
            "ties": draw(st.booleans()), "dtype": draw(dtype), "seed": draw(seeds)}


@st.composite
def dense_cases(draw, dtype=dtypes):
    return {"x": (draw(st.integers(1, 5)), draw(st.integers(1, 6))),
            "units": draw(st.integers(1, 5)), "bias": draw(st.booleans()),
            "dtype": draw(dtype), "seed": draw(seeds)}


@st.composite
def row_cases(draw, dtype=dtypes):
    return {"rows": draw(st.integers(1, 6)), "classes": draw(st.integers(2, 6)),
            "scale": draw(st.sampled_from([1.0, 30.0])), "dtype": draw(dtype),
            "seed": draw(seeds)}


@st.composite
def update_cases(draw, dtype=dtypes):
    return {"shape": tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))),
            "lr": draw(st.sampled_from([0.001, 0.1])), "momentum": draw(st.sampled_from(
                [0.0, 0.9])), "nesterov": draw(st.booleans()), "dtype": draw(dtype),
            "seed": draw(seeds)}


def _conv_arrays(case):
    rng = np.random.default_rng(case["seed"])
    dtype = case["dtype"]
    x = rng.standard_normal(case["x"]).astype(dtype)
    kh, kw, _, f = case["w"]
    w = rng.standard_normal((kh, kw, case["x"][3], f)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype) if case["bias"] else None
    return rng, x, w, b


def _describe(case) -> str:
    """The case as the learner reads it: the shapes and options, and the seed its arrays are
    drawn from (``np.random.default_rng(seed)``; the checker draws the same cases each run,
    so the same command fails the same way again)."""
    return ", ".join(f"{k} {v.__name__ if isinstance(v, type) else v}" for k, v in case.items())


# ----------------------------------------------------------------------------- checks


def check_conv2d_forward(fn, case):
    _, x, w, b = _conv_arrays(case)
    args = (case["stride"], case["padding"])
    _compare("y", fn(x, w, b, *args), REFERENCE.conv2d_forward(x, w, b, *args), case["dtype"])


def check_conv2d_backward(fn, case):
    rng, x, w, b = _conv_arrays(case)
    stride, padding = case["stride"], case["padding"]
    y = REFERENCE.conv2d_forward(x, w, b, stride, padding)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = fn(x, w, dy, stride, padding)
    _compare("dx", dx, _numeric(lambda v: (REFERENCE.conv2d_forward(
        v, w, b, stride, padding) * dy).sum(), x), np.float64)
    _compare("dw", dw, _numeric(lambda v: (REFERENCE.conv2d_forward(
        x, v, b, stride, padding) * dy).sum(), w), np.float64)
    _compare("db", db, dy.sum(axis=(0, 1, 2)), np.float64)


def _pool_input(case):
    rng = np.random.default_rng(case["seed"])
    shape = case["x"]
    if case["ties"]:  # many equal values: the first maximum (row by row) must win
        return rng, rng.integers(-2, 3, shape).astype(case["dtype"])
    return rng, rng.permutation(np.arange(np.prod(shape))).reshape(shape).astype(
        case["dtype"]) / 10


def check_maxpool2d_forward(fn, case):
    _, x = _pool_input(case)
    args = (case["pool"], case["stride"], case["padding"])
    _compare("y", fn(x, *args)[0], REFERENCE.maxpool2d_forward(x, *args)[0], case["dtype"])


def check_maxpool2d_backward(fn, case, module):
    forward = getattr(module, "maxpool2d_forward", REFERENCE.maxpool2d_forward)
    rng, x = _pool_input(case)
    args = (case["pool"], case["stride"], case["padding"])
    y, cache = forward(x, *args)
    dy = rng.standard_normal(np.shape(y))
    want = REFERENCE.maxpool2d_backward(dy, REFERENCE.maxpool2d_forward(x, *args)[1], x.shape,
                                        *args)  # equals central differences away from ties
    _compare("dx", fn(dy, cache, x.shape, *args), want, np.float64)


def check_avgpool2d_forward(fn, case):
    _, x = _pool_input(case)
    args = (case["pool"], case["stride"], case["padding"])
    _compare("y", fn(x, *args), REFERENCE.avgpool2d_forward(x, *args), case["dtype"])


def check_avgpool2d_backward(fn, case):
    rng, x = _pool_input(case)
    args = (case["pool"], case["stride"], case["padding"])
    dy = rng.standard_normal(REFERENCE.avgpool2d_forward(x, *args).shape)
    _compare("dx", fn(dy, x.shape, *args), _numeric(
        lambda v: (REFERENCE.avgpool2d_forward(v, *args) * dy).sum(), x), np.float64)


def _dense_arrays(case):
    rng = np.random.default_rng(case["seed"])
    dtype = case["dtype"]
    x = rng.standard_normal(case["x"]).astype(dtype)
    w = rng.standard_normal((case["x"][1], case["units"])).astype(dtype)
    b = rng.standard_normal(case["units"]).astype(dtype) if case["bias"] else None
    return rng, x, w, b


def check_dense_forward(fn, case):
    _, x, w, b = _dense_arrays(case)
    _compare("y", fn(x, w, b), REFERENCE.dense_forward(x, w, b), case["dtype"])


def check_dense_backward(fn, case):
    rng, x, w, b = _dense_arrays(case)
    dy = rng.standard_normal((len(x), w.shape[1]))
    dx, dw, db = fn(x, w, dy)
    _compare("dx", dx, _numeric(lambda v: (REFERENCE.dense_forward(v, w, b) * dy).sum(), x),
             np.float64)
    _compare("dw", dw, _numeric(lambda v: (REFERENCE.dense_forward(x, v, b) * dy).sum(), w),
             np.float64)
    _compare("db", db, dy.sum(axis=0), np.float64)


def check_softmax_cross_entropy(fn, case):
    rng = np.random.default_rng(case["seed"])
    logits = (case["scale"] * rng.standard_normal((case["rows"], case["classes"])))
    y = np.eye(case["classes"])[rng.integers(0, case["classes"], case["rows"])]
    rows, grad = fn(logits.astype(case["dtype"]), y.astype(case["dtype"]))
    want_rows, _ = REFERENCE.softmax_cross_entropy(logits, y)
    _compare("rows", rows, want_rows, case["dtype"])
    _compare("dlogits", grad, _numeric(
        lambda v: REFERENCE.softmax_cross_entropy(v, y)[0].mean(), logits), case["dtype"])


@st.composite
def activation_cases(draw, dtype=dtypes):
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=3)))
    return {"name": draw(st.sampled_from(["relu", "sigmoid", "tanh", "elu", "leaky_relu",
                                          "silu", "gelu"])),
            "shape": shape, "dtype": draw(dtype), "seed": draw(seeds)}


def _activation_input(case):
    rng = np.random.default_rng(case["seed"])
    z = 3 * rng.standard_normal(case["shape"])
    z[np.abs(z) < 1e-3] = 0.5  # no kinks inside a central difference's reach
    return rng, z.astype(case["dtype"])


def check_activation_forward(fn, case):
    _, z = _activation_input(case)
    _compare("a", fn(case["name"], z), REFERENCE.activation_forward(case["name"], z),
             case["dtype"])


def check_activation_backward(fn, case):
    rng, z = _activation_input(case)
    name = case["name"]
    a = REFERENCE.activation_forward(name, z)
    da = rng.standard_normal(z.shape)
    _compare("dz", fn(name, z, a, da), _numeric(
        lambda v: float((REFERENCE.activation_forward(name, v) * da).sum()), z), np.float64)


@st.composite
def norm_cases(draw, dtype=dtypes):
    return {"rows": draw(st.integers(2, 8)), "channels": draw(st.integers(1, 4)),
            "batch_stats": draw(st.booleans()), "dtype": draw(dtype), "seed": draw(seeds)}


def _norm_arrays(case):
    rng = np.random.default_rng(case["seed"])
    x = (2 * rng.standard_normal((case["rows"], case["channels"])) + 1).astype(case["dtype"])
    gamma = (0.5 + rng.random(case["channels"])).astype(case["dtype"])
    beta = rng.standard_normal(case["channels"]).astype(case["dtype"])
    return rng, x, gamma, beta


def check_batchnorm_forward(fn, case):
    _, x, gamma, beta = _norm_arrays(case)
    mean, var = REFERENCE.moments(x)
    y, x_hat = fn(x, gamma, beta, mean, var, 1e-3)
    want_y, want_x_hat = REFERENCE.batchnorm_forward(x, gamma, beta, mean, var, 1e-3)
    _compare("x_hat", x_hat, want_x_hat, case["dtype"])
    _compare("y", y, want_y, case["dtype"])


def check_batchnorm_backward(fn, case):
    """Central differences of the forward: through the batch's own mean and variance when
    ``batch_stats`` (training), else through fixed ones."""
    rng, x, gamma, beta = _norm_arrays(case)
    fixed_mean, fixed_var = REFERENCE.moments(x)
    dy = rng.standard_normal(x.shape)

    def loss(v, g=gamma, b=beta):
        mean, var = REFERENCE.moments(v) if case["batch_stats"] else (fixed_mean, fixed_var)
        return float((REFERENCE.batchnorm_forward(v, g, b, mean, var, 1e-3)[0] * dy).sum())

    _, x_hat = REFERENCE.batchnorm_forward(x, gamma, beta, fixed_mean, fixed_var, 1e-3)
    dx, dgamma, dbeta = fn(x_hat, gamma, fixed_var, 1e-3, dy, case["batch_stats"])
    _compare("dgamma", dgamma, _numeric(lambda g: loss(x, g=g), gamma), np.float64)
    _compare("dbeta", dbeta, _numeric(lambda b: loss(x, b=b), beta), np.float64)
    _compare("dx", dx, _numeric(loss, x), np.float64)


@st.composite
def dropout_cases(draw, dtype=dtypes):
    return {"shape": tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=4))),
            "rate": draw(st.sampled_from([0.1, 0.5, 0.9])), "key": draw(st.integers(0, 2**40)),
            "dtype": draw(dtype), "seed": draw(seeds)}


def check_dropout(fn, case):
    """The reference's mask for this key, exactly (every backend draws the same one), and
    the kept values scaled by 1 / (1 - rate)."""
    x = np.random.default_rng(case["seed"]).standard_normal(case["shape"]).astype(case["dtype"])
    want = REFERENCE.dropout(x, case["rate"], case["key"])
    got = fn(x, case["rate"], case["key"])
    if np.shape(got) == want.shape:
        dropped, kept = np.asarray(got) == 0, want == 0
        if not np.array_equal(dropped, kept):
            where = tuple(int(i) for i in np.argwhere(dropped != kept)[0])
            raise Mismatch(f"the mask differs from the reference's at {where}: yours "
                           f"{'drops' if dropped[where] else 'keeps'} it (draw it with "
                           "dropout_draws(x.size, key) >= dropout_threshold(rate), in x's "
                           "flat order)")
    _compare("y", got, want, case["dtype"])


def _update_arrays(case, count: int):
    rng = np.random.default_rng(case["seed"])
    arrays = [rng.standard_normal(case["shape"]) for _ in range(count)]
    arrays[-1] = np.abs(arrays[-1])  # Adam's v >= 0
    return [a.astype(case["dtype"]) for a in arrays]


def _check_update(fn, reference, case, count, args, names):
    """The changes the update makes to each array, the optimizer's state first (a wrong
    state explains a wrong parameter), relative to the change's own size."""
    start = _update_arrays(case, count)
    mine, want = [a.copy() for a in start], [a.copy() for a in start]
    fn(*mine, *args)
    reference(*want, *args)
    for i in [*range(2, count), 0]:
        if np.array_equal(mine[i], start[i]) and not np.array_equal(want[i], start[i]):
            raise Mismatch(f"{names[i]} did not change: the update works in place, into the "
                           f"arrays it is given ({names[i]}[...] = ..., or {names[i]} -= ...)")
        _compare(f"the change of {names[i]}", mine[i] - start[i], want[i] - start[i],
                 case["dtype"], floor=1e-30)


def check_sgd_update(fn, case):
    _check_update(fn, REFERENCE.sgd_update, case, 3,
                  (case["lr"], case["momentum"], case["nesterov"]), ("p", "g", "velocity"))


def check_adam_update(fn, case):
    _check_update(fn, REFERENCE.adam_update, case, 4, (case["lr"], 0.9, 0.999, 1e-7),
                  ("p", "g", "m", "v"))


@st.composite
def add_cases(draw, dtype=dtypes):
    """Add's two inputs of one ``shape``, any rank (as a model hands them); ``block``: also
    the block around the merge (a fixed case)."""
    return {"shape": tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))),
            "block": False, "dtype": draw(dtype), "seed": draw(seeds)}


@st.composite
def concatenate_cases(draw, dtype=dtypes):
    """Concatenate's (rows, channels, inner) blocks of ``a_channels`` and ``b_channels``."""
    return {"rows": draw(st.integers(1, 3)), "a_channels": draw(st.integers(1, 4)),
            "b_channels": draw(st.integers(1, 4)), "inner": draw(st.integers(1, 5)),
            "block": False, "dtype": draw(dtype), "seed": draw(seeds)}


def _merge_arrays(case, joined: bool):
    """Add's (a, b) of ``shape``, or, ``joined``, Concatenate's blocks."""
    rng = np.random.default_rng(case["seed"])
    shapes = ([(case["rows"], case[c], case["inner"]) for c in ("a_channels", "b_channels")]
              if joined else [case["shape"]] * 2)
    a, b = (rng.standard_normal(shape).astype(case["dtype"]) for shape in shapes)
    return rng, a, b


def check_add_forward(fn, case):
    _, a, b = _merge_arrays(case, joined=False)
    _compare("y", fn(a, b), REFERENCE.add_forward(a, b), case["dtype"])


def check_add_backward(fn, case, module):
    rng, a, b = _merge_arrays(case, joined=False)
    dy = rng.standard_normal(a.shape)
    da, db = fn(dy)
    _compare("da", da, _numeric(lambda v: ((v + b) * dy).sum(), a), np.float64)
    _compare("db", db, _numeric(lambda v: ((a + v) * dy).sum(), b), np.float64)
    if case["block"]:
        _check_block(module, "residual", case["seed"])


def check_concatenate_forward(fn, case):
    _, a, b = _merge_arrays(case, joined=True)
    _compare("y", fn(a, b), REFERENCE.concatenate_forward(a, b), case["dtype"])


def check_concatenate_backward(fn, case, module):
    rng, a, b = _merge_arrays(case, joined=True)
    dy = rng.standard_normal((case["rows"], a.shape[1] + b.shape[1], case["inner"]))

    def loss(va, vb):
        return (REFERENCE.concatenate_forward(va, vb) * dy).sum()

    da, db = fn(dy, a.shape[1])
    _compare("da", da, _numeric(lambda v: loss(v, b), a), np.float64)
    _compare("db", db, _numeric(lambda v: loss(a, v), b), np.float64)
    if case["block"]:
        _check_block(module, "concatenate", case["seed"])


def _block_model(kind: str):
    """A small model around one merge, as a model uses the merge kernels: ``residual``,
    y = relu(x + conv(relu(conv(x)))) (x fans out: its gradients are summed with
    add_forward); ``concatenate``, two conv branches side by side on the channels."""
    from .layers import Add, Concatenate, Conv2D, Dense, Flatten, Input, ReLU
    from .model import Model

    x = Input((4, 4, 2))
    h = Conv2D(2, 3, padding="same", activation="relu")(x)
    if kind == "residual":
        branch = Conv2D(2, 3, padding="same")(Conv2D(2, 3, padding="same",
                                                     activation="relu")(h))
        h = ReLU()(Add()([h, branch]))
    else:
        h = Concatenate()([Conv2D(1, 1)(h), Conv2D(2, 3, padding="same", activation="tanh")(h)])
    model = Model(x, Dense(3, activation="softmax")(Flatten()(h)))
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


def _check_block(module, kind: str, seed: int) -> None:
    """The gradient of every weight of ``_block_model(kind)``, trained through the file's
    kernels (``use_backend(module)``: the reference's for those it lacks), against central
    differences: what the merge's backward means inside a network."""
    from .backends import use_backend
    from .gradcheck import check_model

    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((2, 4, 4, 2)), rng.integers(0, 3, 2)
    with use_backend(module) as backend:
        error = check_model(_block_model(kind), x, y)
    merge = "add" if kind == "residual" else "concatenate"
    calls = getattr(backend, "module_calls", None) or {}  # a learner's module's: counted
    assert calls.get(f"{merge}_backward", 1) > 0, "the block ran another merge kernel"
    if not error < 1e-6:
        raise Mismatch(f"a {kind} block trained with your kernels: its weights' gradients "
                       f"differ from central differences (largest relative error {error:.3g}; "
                       "see _block_model in minicnn/check.py for the block)")


@dataclass(frozen=True)
class KernelCheck:
    check: Callable
    cases: st.SearchStrategy
    needs_module: bool = False  # the check takes the file: its forward's cache, or a block
    fixed: tuple = ()  # cases checked first, whatever is drawn: the classic extremes


# Logits a softmax without the max subtraction overflows on (e^1000 in float64, e^100 in
# float32), a batch of one, and ties.
EXTREME_LOGITS = (
    {"rows": 4, "classes": 5, "scale": 1000.0, "dtype": np.float64, "seed": 1},
    {"rows": 3, "classes": 4, "scale": 100.0, "dtype": np.float32, "seed": 2},
    {"rows": 1, "classes": 3, "scale": 1.0, "dtype": np.float32, "seed": 3},
    {"rows": 2, "classes": 3, "scale": 0.0, "dtype": np.float64, "seed": 4},
)
# Each activation once, whatever the draw picks.
EVERY_ACTIVATION = tuple({"name": name, "shape": (3, 4), "dtype": np.float64, "seed": i}
                         for i, name in enumerate(["relu", "sigmoid", "tanh", "elu",
                                                   "leaky_relu", "silu", "gelu"]))

# The merges' backward inside a block, once (a model built and gradient-checked).
ADD_BLOCK = {"shape": (2, 4, 4, 2), "block": True, "dtype": np.float64, "seed": 5}
CONCATENATE_BLOCK = {"rows": 2, "a_channels": 3, "b_channels": 2, "inner": 4, "block": True,
                     "dtype": np.float64, "seed": 6}


CHECKS = {
    "conv2d_forward": KernelCheck(check_conv2d_forward, conv_cases()),
    "conv2d_backward": KernelCheck(check_conv2d_backward, conv_cases(FLOAT64)),
    "maxpool2d_forward": KernelCheck(check_maxpool2d_forward, pool_cases()),
    "maxpool2d_backward": KernelCheck(check_maxpool2d_backward, pool_cases(FLOAT64), True),
    "avgpool2d_forward": KernelCheck(check_avgpool2d_forward, pool_cases()),
    "avgpool2d_backward": KernelCheck(check_avgpool2d_backward, pool_cases(FLOAT64)),
    "dense_forward": KernelCheck(check_dense_forward, dense_cases()),
    "dense_backward": KernelCheck(check_dense_backward, dense_cases(FLOAT64)),
    "activation_forward": KernelCheck(check_activation_forward, activation_cases(),
                                      fixed=EVERY_ACTIVATION),
    "activation_backward": KernelCheck(check_activation_backward, activation_cases(FLOAT64),
                                       fixed=EVERY_ACTIVATION),
    "batchnorm_forward": KernelCheck(check_batchnorm_forward, norm_cases()),
    "batchnorm_backward": KernelCheck(check_batchnorm_backward, norm_cases(FLOAT64)),
    "softmax_cross_entropy": KernelCheck(check_softmax_cross_entropy, row_cases(),
                                         fixed=EXTREME_LOGITS),
    "dropout": KernelCheck(check_dropout, dropout_cases()),
    "add_forward": KernelCheck(check_add_forward, add_cases()),
    "add_backward": KernelCheck(check_add_backward, add_cases(FLOAT64), True,
                                fixed=(ADD_BLOCK,)),
    "concatenate_forward": KernelCheck(check_concatenate_forward, concatenate_cases()),
    "concatenate_backward": KernelCheck(check_concatenate_backward, concatenate_cases(FLOAT64),
                                        True, fixed=(CONCATENATE_BLOCK,)),
    "sgd_update": KernelCheck(check_sgd_update, update_cases()),
    "adam_update": KernelCheck(check_adam_update, update_cases()),
}


# ----------------------------------------------------------------------------- running


class CheckError(Exception):
    """The file cannot be checked (no kernel in it, a wrong signature, a misspelt name)."""


def load_module(path: str | Path) -> ModuleType:
    """Import a Python file as a module of its own."""
    path = Path(path)
    if not path.is_file():
        raise CheckError(f"{path}: no such file")
    if path.suffix != ".py":
        raise CheckError(f"{path}: not a Python file; give a .py file of kernels, e.g. "
                         "exercises/dense.py")
    spec = importlib.util.spec_from_file_location(f"minicnn_checked_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def kernels_in(module: ModuleType) -> dict[str, Callable]:
    """The module's functions named as checkable kernels, with the contract's arguments.
    A misspelt kernel name or wrong arguments is a CheckError; so is a module with none."""
    functions = {name: fn for name, fn in vars(module).items()  # NumPy, Numba or Cython
                 if callable(fn) and not isinstance(fn, (type, ModuleType))
                 and not name.startswith("_")}
    found, problems = {}, []
    for name, fn in functions.items():
        if name in CHECKS:
            args = tuple(inspect.signature(fn).parameters)
            if args != KERNELS[name][0]:
                problems.append(f"{name}{args}: the contract's arguments are "
                                f"{KERNELS[name][0]}")
            found[name] = fn
        elif name in KERNELS:
            problems.append(f"{name} is a kernel this checker cannot check yet; it checks "
                            f"{sorted(CHECKS)}")
        else:
            close = difflib.get_close_matches(name, CHECKS, n=1, cutoff=0.85)
            if close:
                problems.append(f"{name} looks like the kernel {close[0]}: rename it")
    if problems:
        raise CheckError("; ".join(problems))
    if not found:
        raise CheckError(f"{module.__name__} defines no kernel to check; name functions as "
                         f"the contract does, e.g. {sorted(CHECKS)[:3]}")
    return found


# What an update kernel changes in place; every other kernel leaves its arguments alone.
UPDATED_IN_PLACE = {"sgd_update": ("p", "velocity"), "adam_update": ("p", "m", "v")}
# Arguments a kernel may return as they are (Add's backward hands dy itself to both inputs:
# nothing writes into a kernel's inputs, so the two branches can share it).
RETURNED_AS_IS = {"add_backward": ("dy",)}


def guarded(name: str, fn: Callable) -> Callable:
    """``fn``, every call checked for what the model relies on besides the values: the
    arguments as they were (but those an update changes in place); what it returns of the
    reference's types (NumPy arrays of the reference's dtype, an update's count of elements
    kept as an int), new arrays (no view of an argument), and the arrays of the call before
    left alone (a buffer reused between calls changes what a layer kept from its forward)."""
    params, writes = KERNELS[name][0], UPDATED_IN_PLACE.get(name, ())
    previous: list = []

    def call(*args):
        before = {i: np.array(a, copy=True) for i, a in enumerate(args)
                  if isinstance(a, np.ndarray)}
        expected = getattr(REFERENCE, name)(*[np.array(a, copy=True)
                                              if isinstance(a, np.ndarray) else a for a in args])
        result = fn(*args)
        for i, copy in before.items():
            if params[i] not in writes and not np.array_equal(args[i], copy, equal_nan=True):
                raise Mismatch(f"{name} changed its argument {params[i]}: a kernel leaves its "
                               "inputs as they were and returns new arrays")
        problem = result_mismatch(name, result, kind_of(expected))
        if problem:
            raise Mismatch(problem)
        if writes:
            return result
        got = result if isinstance(result, tuple) else (result,)
        for k, out in enumerate(got):
            if k in OPAQUE_OUTPUTS.get(name, ()):
                continue
            what = f"{name}'s result {k + 1}" if len(got) > 1 else f"{name}'s result"
            shared = [params[i] for i, a in enumerate(args)
                      if isinstance(a, np.ndarray) and np.shares_memory(out, a)
                      and not (out is a and params[i] in RETURNED_AS_IS.get(name, ()))]
            if shared:
                raise Mismatch(f"{what} is (a view of) its argument {shared[0]}; return a "
                               "new array")
        for old, copy in previous:
            if not np.array_equal(old, copy, equal_nan=True):
                raise Mismatch(f"{name} wrote into an array it had returned before: return "
                               "new arrays each call (a layer keeps its forward's results "
                               "for the backward)")
        previous[:] = [(out, out.copy()) for k, out in enumerate(got)
                       if isinstance(out, np.ndarray) and k not in OPAQUE_OUTPUTS.get(name, ())]
        return result

    return call


def check_kernel(name: str, fn: Callable, module: ModuleType | None = None,
                 examples: int = 40, on_case: Callable | None = None) -> str | None:
    """None when ``fn`` passes the fixed cases and every drawn one, else the first failing
    case (drawn: shrunk as far as it would go), described. ``on_case(description)`` is
    told of each case before it runs."""
    spec = CHECKS[name]
    failures: list[str] = []
    fn = guarded(name, fn)

    def check(case):
        if on_case is not None:
            on_case(_describe(case))
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a mismatch says it; overflow noise does not
            if spec.needs_module:
                spec.check(fn, case, module)
            else:
                spec.check(fn, case)

    for case in spec.fixed:
        try:
            check(case)
        except Exception as exc:  # noqa: BLE001  (a learner's kernel may raise anything)
            return f"{_describe(case)}: {type(exc).__name__}: {exc}"

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(spec.cases)
    def run(case):
        try:
            check(case)
        except Exception as exc:  # noqa: BLE001  (a learner's kernel may raise anything)
            failures.append(f"{_describe(case)}: {type(exc).__name__}: {exc}")
            raise

    try:
        run()
    except Exception:  # noqa: BLE001
        return failures[-1] if failures else "failed"
    return None


def check_module(module: ModuleType, examples: int = 40, out=None, report=None) -> bool:
    """Check every kernel of ``module``; print PASS or FAIL per kernel (to ``out``, standard
    output by default); True if all pass. ``report(kind, *fields)`` hears of each kernel
    and case as it starts and of each verdict (``supervise``)."""
    out = out or sys.stdout
    report = report or (lambda *message: None)
    ok = True
    for name, fn in kernels_in(module).items():
        report("KERNEL", name)
        failure = check_kernel(name, fn, module, examples, lambda case: report("CASE", case))
        verdict = f"PASS {name}" if failure is None else f"FAIL {name}: {failure}"
        report("VERDICT", verdict)
        print(verdict, file=out)
        ok = ok and failure is None
    return ok


def _load_or_exit_code(path: str) -> ModuleType | int:
    """The file as a module, or the exit code after saying in one line why it is not one:
    2 (it cannot be checked), 3 (it fails as it is imported)."""
    try:
        return load_module(path)
    except CheckError as exc:
        print(f"minicnn.check: {exc}", file=sys.stderr)
        return 2
    except SyntaxError as exc:
        print(f"minicnn.check: {exc.filename}:{exc.lineno}: SyntaxError: {exc.msg}",
              file=sys.stderr)
        return 3
    except Exception as exc:  # noqa: BLE001  (the file's own code failed as it was imported)
        print(f"minicnn.check: {path} failed as it was imported: {type(exc).__name__}: "
              f"{exc}", file=sys.stderr)
        return 3


# Set in the checking process's environment to the file it checks (by ``supervise``), and
# while ``run_checks`` runs (shared by every copy of this module, ``python -m`` runs one of
# its own): the checker refuses to start again from inside that file.
CHECKING, RUNNING = "MINICNN_CHECKING", "MINICNN_CHECK_RUNNING"
_FROM_INSIDE = ("minicnn.check was run from inside a file it is checking: run it from the "
                "command line, not from the file (a file that checks itself would start "
                "checkers without end)")


def run_checks(path: str, examples: int, report_fd: int | None = None) -> int:
    """Import the file and check its kernels in this process; the exit code. With
    ``report_fd``, every kernel, case and verdict is also written there, a line each, for
    the supervising process."""
    if os.environ.get(RUNNING):
        raise RuntimeError(_FROM_INSIDE)
    os.environ[RUNNING] = path
    try:
        return _check_file(path, examples, report_fd)
    finally:
        del os.environ[RUNNING]


def _check_file(path: str, examples: int, report_fd: int | None) -> int:
    stream = os.fdopen(report_fd, "w", buffering=1) if report_fd is not None else None

    def report(kind: str, *fields: str) -> None:
        if stream is not None:
            text = "\t".join((kind, *fields)).replace("\n", " ")
            stream.write(text + "\n")

    module = _load_or_exit_code(path)
    if isinstance(module, int):
        return module
    report("IMPORTED")
    quiet = open(os.devnull, "w") if stream is not None else None  # the supervisor prints
    try:
        code = 0 if check_module(module, examples, quiet, report) else 1
    except CheckError as exc:
        print(f"minicnn.check: {exc}", file=sys.stderr)
        code = 2
    report("END", str(code))
    return code


def _lines(fd: int, timeout: float):
    """The lines written to ``fd``, each within ``timeout`` seconds of the one before (a
    TimeoutError past it); ends when the writer closes it."""
    buffer = b""
    while True:
        while b"\n" not in buffer:
            if not select.select([fd], [], [], timeout)[0]:
                raise TimeoutError
            chunk = os.read(fd, 65536)
            if not chunk:
                return
            buffer += chunk
        line, buffer = buffer.split(b"\n", 1)
        yield line.decode(errors="replace")


def supervise(path: str, examples: int, time_limit: float) -> int:
    """Check the file in a process of its own, so that nothing it does can pass for a
    verdict: a case that runs past ``time_limit`` seconds, an exit or a crash is a FAIL
    naming the kernel and the case. -> the exit code (0 all pass, 1 a FAIL, 2 or 3 the
    file could not be checked or imported)."""
    if os.environ.get(CHECKING):
        raise RuntimeError(_FROM_INSIDE)
    read_fd, write_fd = os.pipe()
    child = subprocess.Popen([sys.executable, "-m", "minicnn.check", path, "--examples",
                              str(examples), "--report-fd", str(write_fd)],
                             pass_fds=(write_fd,), env={**os.environ, CHECKING: path})
    os.close(write_fd)
    kernel = case = None
    imported, code = False, None
    try:
        for line in _lines(read_fd, time_limit):
            kind, _, rest = line.partition("\t")
            if kind == "IMPORTED":
                imported = True
            elif kind == "KERNEL":
                kernel, case = rest, None
            elif kind == "CASE":
                case = rest
            elif kind == "VERDICT":
                print(rest, flush=True)
                kernel = None
            elif kind == "END":
                code = int(rest)
    except TimeoutError:
        child.kill()
        print(f"FAIL {kernel or path}: no result within {time_limit:g} s"
              + (f" on the case {case}" if case else " (as the file was imported)")
              + "; the kernels after it were not checked", flush=True)
        child.wait()
        return 1
    finally:
        os.close(read_fd)
    status = child.wait()
    if code is not None:
        return code
    if not imported:  # it said why (2, 3), or ended the process itself as it was imported
        if status in (2, 3):
            return status
        print(f"FAIL {path}: the process ended (exit code {status}) as the file was "
              "imported, before any kernel was checked", flush=True)
        return 3
    where = f"{kernel}, on the case {case}" if kernel else "between kernels"
    print(f"FAIL {kernel or path}: the process ended (exit code {status}) while checking "
          f"{where}; a kernel must return, not exit", flush=True)
    return 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minicnn.check",
                                     description="Check kernels against the reference.")
    parser.add_argument("file", help="a Python file defining kernels (e.g. an exercise)")
    parser.add_argument("--examples", type=_positive, default=40,
                        help="cases drawn per kernel (default: %(default)s)")
    parser.add_argument("--time-limit", type=_seconds, default=60.0,
                        help="seconds a case may take (default: %(default)s)")
    parser.add_argument("--report-fd", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.report_fd is not None:  # the checking process that ``supervise`` started
        return run_checks(args.file, args.examples, args.report_fd)
    return supervise(args.file, args.examples, args.time_limit)


def _seconds(text: str) -> float:
    """argparse's type for --time-limit: a number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, got {text!r}")
    return value


def _positive(text: str) -> int:
    """argparse's type for --examples: an int of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


if __name__ == "__main__":
    sys.exit(main())
