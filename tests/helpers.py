"""What the tests share: the backends available here, small data sets made on the spot, the
examples as modules, the comparison of a backend's kernels with the NumPy reference (each
comparison recorded, so that test_equivalence can tell which kernels were compared), and
the random models of the property tests."""

import gzip
import hashlib
import importlib.util
import inspect
import json
import os
from pathlib import Path

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

import minicnn
from minicnn import Model, Sequential
from minicnn.backends.reference import NumpyBackend, activations
from minicnn.datasets import write_idx
from minicnn.layers import (
    Add,
    AveragePooling2D,
    BatchNormalization,
    Concatenate,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    Input,
    MaxPool2D,
    ReLU,
)
from minicnn.optimizers import SGD, Adam, AdamW, RMSprop

# -- backends and data ------------------------------------------------------------------

SIMULATED_CUDA = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


BACKENDS = [b for b in minicnn.available_backends() if not (b == "cuda" and SIMULATED_CUDA)]


FAST_BACKENDS = [b for b in BACKENDS if b != "numpy"]


def synthetic_images(n: int = 200, size: int = 8, seed: int = 0):
    """A small learnable image problem: class = which quadrant holds the bright blob."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.normal(0, 0.1, (n, size, size, 1))
    half = size // 2
    for k in range(4):
        r, c = divmod(k, 2)
        x[y == k, r * half:(r + 1) * half, c * half:(c + 1) * half, 0] += 1.0
    return x.astype(np.float32), y


def fake_fashion_folder(folder, seed=0):
    """Four small IDX files, and the checksum table that would accept them."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 255, (6, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 6).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 255, (3, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 3).astype(np.uint8),
    }
    table = {}
    for name, array in arrays.items():
        write_idx(folder / (name + ".gz"), array)
        raw = gzip.decompress((folder / (name + ".gz")).read_bytes())
        table[name] = (hashlib.sha256(raw).hexdigest(), len(raw))
    return arrays, table


ROOT = Path(__file__).resolve().parent.parent  # the checkout
EXAMPLES = ROOT / "examples"


def load_example(name):
    """examples/NAME.py as a module (its functions, not its main run)."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- small models -------------------------------------------------------------------------

def bn_cnn(dropout=0.25):
    return Sequential([
        Input((8, 8, 1)),
        Conv2D(4, 3, padding="same", use_bias=False, kernel_initializer="he_normal"),
        BatchNormalization(),
        Conv2D(4, 3, activation="gelu", kernel_regularizer="l2"),
        AveragePooling2D(2, padding="same"),
        Dropout(dropout),
        GlobalAveragePooling2D(),
        Dense(4, activation="softmax"),
    ])


def dense_classifier(optimizer="adam"):
    model = Sequential([Flatten(input_shape=(8, 8, 1)), Dense(4, activation="softmax")])
    model.compile(optimizer, "sparse_categorical_crossentropy", ["accuracy"])
    return model


def trained_model(optimizer="adam"):
    model = Sequential([Conv2D(2, (3, 3), activation="relu", input_shape=(6, 6, 1)),
                        MaxPool2D((2, 2)), Flatten(), Dense(3, activation="softmax")])
    model.compile(optimizer, "sparse_categorical_crossentropy", ["accuracy"])
    x = np.random.default_rng(0).random((8, 6, 6, 1)).astype(np.float32)
    model.fit(x, np.arange(8) % 3, batch_size=4, epochs=1, verbose=0, seed=0)
    return model


def read_npz(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def write_npz(path, arrays, config=None):
    if config is not None:
        arrays = {**arrays, "config": np.frombuffer(json.dumps(config).encode(), np.uint8)}
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def config_of(arrays):
    return json.loads(arrays["config"].tobytes())


def small_dense_model(**dense):
    return Sequential([Dense(3, activation="relu", input_shape=(4,), **dense),
                       Dense(2, activation="softmax")])


def small_cnn():
    model = Sequential([Conv2D(2, (3, 3), activation="relu", input_shape=(8, 8, 1)),
                        Flatten(), Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    return model


# -- kernels against the reference ----------------------------------------------------------

# backend name -> the kernels compared with the reference so far in this session
COMPARED_RUNS: dict[str, set[str]] = {}


def record(backend, name: str) -> None:
    """Note that kernel ``name`` of ``backend`` was compared with the reference."""
    COMPARED_RUNS.setdefault(backend.name, set()).add(name)


numpy_ref = NumpyBackend()


CONV_CASES = [  # (x shape, kernel shape, stride, padding)
    ((1, 7, 9, 1), (3, 3, 1, 4), (1, 1), "valid"),
    ((3, 8, 7, 3), (3, 2, 3, 5), (2, 2), "same"),
    ((2, 9, 9, 3), (5, 5, 3, 2), (2, 1), "valid"),
    ((2, 5, 6, 2), (4, 4, 2, 3), (3, 2), "same"),
    ((4, 28, 28, 1), (3, 3, 1, 32), (1, 1), "valid"),
    ((2, 6, 7, 1), (3, 2, 1, 4), (2, 1), "same"),  # one channel: numba's plane kernels
    ((5, 9, 11, 1), (5, 4, 1, 3), (2, 1), "same"),  # (several images per thread)
    # 3x3, stride 1, several channels, outputs >= 8: the compiled backends' Winograd path
    # (partial tiles at the edges: 11 = 4 + 4 + 3, 'same' padding read as zeros)
    ((3, 13, 13, 8), (3, 3, 8, 16), (1, 1), "valid"),
    ((2, 10, 9, 5), (3, 3, 5, 7), (1, 1), "same"),
]


POOL_CASES = [  # (x shape, pool, stride, padding)
    ((2, 8, 8, 3), (2, 2), (2, 2), "valid"), ((1, 7, 9, 1), (3, 3), (2, 2), "valid"),
    ((3, 5, 5, 2), (2, 3), (1, 2), "valid"), ((2, 7, 5, 3), (2, 2), (2, 2), "same"),
    ((1, 6, 7, 2), (3, 2), (1, 3), "same"), ((2, 4, 5, 3), (4, 5), (4, 5), "valid"),
    ((2, 5, 6, 2), (3, 3), (1, 1), "same"),
    ((1, 5, 6, 70), (3, 3), (2, 2), "same"),  # more channels than Cython's block of 64
]


UPDATES = [  # (kernel, its state arrays, momentum and nesterov or Adam's betas and eps)
    ("adam_update", 2, (0.9, 0.999, 1e-7)), ("sgd_update", 1, (0.9, False)),
    ("sgd_update", 1, (0.0, False)), ("sgd_update", 1, (0.9, True))]


def close(a, b, dtype):
    tol = 1e-10 if dtype == np.float64 else 2e-4
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


def implements(backend, kernel: str) -> bool:
    """Whether ``backend``'s class defines ``kernel`` itself (not the reference's)."""
    return (inspect.getattr_static(type(backend), kernel)
            is not inspect.getattr_static(NumpyBackend, kernel))


def host(backend, value):
    return backend.to_host(value) if hasattr(value, "shape") else value


def compare(backend, name, args, dtype):
    """Run kernel ``name`` on both backends; compare every array it returns (``record``)."""
    record(backend, name)
    assert implements(backend, name), f"{backend.name} does not implement {name}"
    expected = getattr(numpy_ref, name)(*args)
    got = getattr(backend, name)(*[backend.to_device(a) if isinstance(a, np.ndarray) else a
                                   for a in args])
    if not isinstance(expected, tuple):
        expected, got = (expected,), (got,)
    for e, g in zip(expected, got):
        if e is None:  # dx without need_dx
            assert g is None
        else:
            close(host(backend, g), e, dtype)


def check_conv_kernels(fast, case, dtype):
    x_shape, w_shape, stride, padding = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[3]).astype(dtype)
    y = numpy_ref.conv2d_forward(x, w, b, stride, padding)
    dy = rng.standard_normal(y.shape).astype(dtype)
    compare(fast, "conv2d_forward", (x, w, b, stride, padding), dtype)
    compare(fast, "conv2d_backward", (x, w, dy, stride, padding), dtype)
    # the fused ReLU: its epilogue, and the gradient sent back through it; the first layer's
    compare(fast, "conv2d_relu_forward", (x, w, b, stride, padding), dtype)
    a = numpy_ref.conv2d_relu_forward(x, w, b, stride, padding)
    assert 0 < np.count_nonzero(a) < a.size
    for need_dx in (True, False):
        compare(fast, "conv2d_relu_backward", (x, w, a, dy, stride, padding, need_dx), dtype)
    compare(fast, "conv2d_weight_gradients", (x, w, dy, stride, padding), dtype)


def check_pool_kernels(fast, case, dtype):
    x_shape, pool, stride, padding = case
    rng = np.random.default_rng(1)
    x = rng.standard_normal(x_shape).astype(dtype)
    y, cache = numpy_ref.maxpool2d_forward(x, pool, stride, padding)
    record(fast, "maxpool2d_forward")
    record(fast, "maxpool2d_backward")
    fy, fcache = fast.maxpool2d_forward(fast.to_device(x), pool, stride, padding)
    close(fast.to_host(fy), y, dtype)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = numpy_ref.maxpool2d_backward(dy, cache, x.shape, pool, stride, padding)
    close(fast.to_host(fast.maxpool2d_backward(fast.to_device(dy), fcache, x.shape, pool,
                                                stride, padding)), dx, dtype)
    compare(fast, "avgpool2d_forward", (x, pool, stride, padding), dtype)
    compare(fast, "avgpool2d_backward", (dy, x.shape, pool, stride, padding), dtype)


def check_max_pool_ties_and_nan_pick_the_reference_pixel(fast, case, dtype):
    """Ties go to the first pixel of the window, a NaN beats every number (np.argmax's
    rules): the cache, and so the backward pass, must name the reference's pixel."""
    x_shape, pool, stride, padding = case
    rng = np.random.default_rng(2)
    x = rng.integers(-1, 2, x_shape).astype(dtype)  # many ties
    x[rng.random(x_shape) < 0.1] = np.nan
    y, cache = numpy_ref.maxpool2d_forward(x, pool, stride, padding)
    fy, fcache = fast.maxpool2d_forward(fast.to_device(x), pool, stride, padding)
    np.testing.assert_array_equal(fast.to_host(fy), y)
    np.testing.assert_array_equal(fast.to_host(fcache), cache)


def check_dense_activation_loss_and_optimizer_kernels(fast, dtype):
    rng = np.random.default_rng(3)
    # (batch, inputs): the compiled backends split the batch, then W's rows, across threads;
    # one input or one sample leaves a thread nothing to do. Many inputs per row (3, 50)
    # split every product by W's rows (compiled.split_by_weight_rows).
    for n, k in ((1, 3), (5, 1), (5, 7), (3, 50)):
        x, w = rng.standard_normal((n, k)).astype(dtype), rng.standard_normal((k, 4)).astype(dtype)
        b, dy = rng.standard_normal(4).astype(dtype), rng.standard_normal((n, 4)).astype(dtype)
        compare(fast, "dense_forward", (x, w, b), dtype)
        compare(fast, "dense_backward", (x, w, dy), dtype)
        compare(fast, "dense_relu_forward", (x, w, b), dtype)
        a = numpy_ref.dense_relu_forward(x, w, b)
        for need_dx in (True, False):
            compare(fast, "dense_relu_backward", (x, w, a, dy, need_dx), dtype)
        compare(fast, "dense_weight_gradients", (x, w, dy), dtype)
    z = (10 * rng.standard_normal((6, 3, 4))).astype(dtype)
    for name in activations.ACTIVATIONS:
        a = numpy_ref.activation_forward(name, z)
        compare(fast, "activation_forward", (name, z), dtype)
        da = rng.standard_normal(z.shape).astype(dtype)
        compare(fast, "activation_backward", (name, z, a, da), dtype)
    y = np.eye(4, dtype=dtype)[rng.integers(0, 4, 5)]
    logits = (30 * rng.standard_normal((5, 4))).astype(dtype)
    compare(fast, "softmax_cross_entropy", (logits, y), dtype)
    for name in ("mean_squared_error", "count_correct"):  # CUDA's own; the CPUs' are the ref's
        if implements(fast, name):
            compare(fast, name, (logits, y), dtype)
    p, g = rng.standard_normal(9).astype(dtype), rng.standard_normal(9).astype(dtype)
    m, v = rng.standard_normal(9).astype(dtype), rng.random(9).astype(dtype)
    for update, args in (("adam_update", (0.01, 0.9, 0.999, 1e-7)),
                         ("sgd_update", (0.1, 0.9, False)), ("sgd_update", (0.1, 0.0, False)),
                         ("sgd_update", (0.1, 0.9, True))):
        ref = [a.copy() for a in (p, g, m, v)]
        dev = [fast.to_device(a.copy()) for a in (p, g, m, v)]
        state_ref = ref[2:] if update == "adam_update" else ref[2:3]
        state_dev = dev[2:] if update == "adam_update" else dev[2:3]
        getattr(numpy_ref, update)(ref[0], ref[1], *state_ref, *args)
        record(fast, update)
        getattr(fast, update)(dev[0], dev[1], *state_dev, *args)
        for r, d in zip(ref, dev):
            close(fast.to_host(d), r, dtype)


def check_optimizer_state_below_the_normal_floats_becomes_zero(fast, dtype):
    """Adam's m and v and SGD's velocity that decay below the smallest normal float become 0
    on every backend, as in the reference (optimizers.flush_to_zero): a dead unit's state would
    otherwise linger among the denormals, where CPU arithmetic is many times slower."""
    tiny = np.finfo(dtype).tiny
    live = np.arange(64) % 4 == 0
    g = np.where(live, 1e-3, 0.0).astype(dtype)
    # one step of decay (m and velocity x0.9, v x0.999) from the denormals
    fast_decay, slow_decay = np.full(64, 1.05 * tiny, dtype), np.full(64, 1.0005 * tiny, dtype)
    arrays = {"p": np.ones(64, dtype), "m": fast_decay, "v": slow_decay, "velocity": fast_decay}
    results = {}
    for backend in (numpy_ref, fast):
        got = {k: backend.to_device(a.copy()) for k, a in arrays.items()}
        backend.adam_update(got["p"], backend.to_device(g), got["m"], got["v"], 1e-3, 0.9,
                            0.999, 1e-7)
        backend.sgd_update(got["p"], backend.to_device(g), got["velocity"], 0.01, 0.9)
        results[backend] = {k: backend.to_host(a) for k, a in got.items()}
    for key in arrays:
        reference, value = results[numpy_ref][key], results[fast][key]
        close(value, reference, dtype)
        if key != "p":
            assert np.all(value[~live] == 0) and np.all(np.abs(value[live]) >= tiny), key


def check_an_update_that_is_not_finite_keeps_the_old_values(fast, dtype, update, states, args,
                                                           size):
    """NaN and inf gradients and a step past the largest float: those elements keep all
    their old values (the reference's keep_finite), the others update; the count comes
    back (CUDA: the step's flag says KEPT). The compiled backends update a block at a time
    and put back what is not finite: the bad elements sit in different blocks and chunks."""
    rng = np.random.default_rng(4)
    big = np.finfo(dtype).max
    nan, inf, overflow = 3, size // 2, size - 1
    p, g = rng.standard_normal(size).astype(dtype), 1e-3 * rng.standard_normal(size).astype(dtype)
    g[nan], g[inf] = np.nan, -np.inf
    p[overflow], g[overflow] = 0.95 * big, -1  # a step of about lr = big / 10 upwards: overflows
    state = [(0.5 + 0.5 * rng.random(size)).astype(dtype) for _ in range(states)]
    state[0][overflow] = -1 if update == "adam_update" else 0
    args = (float(big) / 10, *args)
    ref = [a.copy() for a in (p, g, *state)]
    kept = getattr(numpy_ref, update)(ref[0], ref[1], *ref[2:], *args)
    assert kept == 3 and all(np.isfinite(a).all() for i, a in enumerate(ref) if i != 1)
    for i in (nan, inf, overflow):
        assert ref[0][i] == p[i] and all(r[i] == s[i] for r, s in zip(ref[2:], state))
    dev = [fast.to_device(a.copy()) for a in (p, g, *state)]
    if fast.on_device:  # the count goes to the step's flag, on the device
        from minicnn.backends.cuda.optimizers import KEPT, guarded_update
        flag = fast.to_device(np.zeros(1, np.int32))
        with guarded_update(flag):
            assert getattr(fast, update)(dev[0], dev[1], *dev[2:], *args) == 0
        assert fast.to_host(flag)[0] == KEPT  # (stamp 0: outside a training step)
    else:
        assert getattr(fast, update)(dev[0], dev[1], *dev[2:], *args) == kept
    for i, (r, d) in enumerate(zip(ref, dev)):
        if i != 1:
            np.testing.assert_allclose(fast.to_host(d), r, rtol=2e-4 if dtype == np.float32
                                       else 1e-10)


def check_one_hot_from_class_indices(fast, dtype, rows, classes):
    """Sparse labels (class indices in the compute dtype) -> each batch's one-hot rows."""
    labels = np.random.default_rng(rows).integers(0, classes, rows).astype(dtype)
    got = fast.to_host(fast.one_hot(fast.to_device(labels), classes))
    assert got.dtype == dtype
    assert np.array_equal(got, numpy_ref.one_hot(labels, classes))
    assert np.array_equal(got.argmax(axis=1), labels) and np.all(got.sum(axis=1) == 1)


def check_dropout_draws_the_reference_mask(fast, dtype, shape, rate):
    """Every backend keeps exactly the reference's elements (integer draws from the key and
    the flat index), scaled by 1 / (1 - rate); the same key remakes the mask (the backward),
    another key draws a new one, and the kept share is 1 - rate."""
    x = np.random.default_rng(5).standard_normal(shape).astype(dtype)
    key = 2**63 + 12345  # keys use all 64 bits
    want = numpy_ref.dropout(x, rate, key)
    record(fast, "dropout")
    got = fast.to_host(fast.dropout(fast.to_device(x), rate, key))
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(fast.to_host(fast.dropout(fast.to_device(x), rate, key)), want)
    kept = want != 0
    np.testing.assert_array_equal(want[kept], x[kept] * dtype(1 / (1 - rate)))
    if x.size >= 1000:
        assert abs(kept.mean() - (1 - rate)) < 0.02
        assert not np.array_equal(kept, numpy_ref.dropout(x, rate, key + 1) != 0)


def check_smooth_labels(fast, dtype, smoothing, uniform):
    """Label smoothing's targets (1 - s) y + s u, in y's dtype."""
    y = np.eye(7, dtype=dtype)[np.random.default_rng(2).integers(0, 7, 33)]
    got = fast.to_host(fast.smooth_labels(fast.to_device(y), smoothing, uniform))
    assert got.dtype == dtype
    np.testing.assert_allclose(got, numpy_ref.smooth_labels(y, smoothing, uniform),
                               rtol=1e-6 if dtype == np.float32 else 1e-15)
    np.testing.assert_allclose(got, y * (1 - smoothing) + smoothing * uniform, rtol=1e-6)


# -- random models (the property tests) -------------------------------------------------------

ACTIVATIONS = ["relu", "sigmoid", "tanh", "elu", "leaky_relu", "silu", "gelu", None]


@st.composite
def models(draw, max_side: int = 9, max_filters: int = 4, max_batch: int = 6):
    """(layer factories, input shape, batch size, n classes, dtype, optimizer factory)."""
    shape = (draw(st.integers(3, max_side)), draw(st.integers(3, max_side)),
             draw(st.integers(1, 3)))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    layers = []
    for _ in range(draw(st.integers(0, 2))):
        conv = dict(filters=draw(st.integers(1, max_filters)),
                    kernel_size=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
                    strides=(draw(st.integers(1, 2)), draw(st.integers(1, 2))),
                    padding=draw(st.sampled_from(["valid", "same"])),
                    activation=draw(st.sampled_from(ACTIVATIONS)),
                    use_bias=draw(st.booleans()))
        layers.append(lambda c=conv: Conv2D(**c))
        # BatchNorm divides by the batch's spread: on a few near-equal float32 values the
        # backends' last-bit rounding differences flip ReLUs and diverge. Not a backend bug,
        # an ill-conditioned input (hypothesis found one); float64 tests BatchNorm exactly.
        if dtype == "float64" and draw(st.booleans()):
            layers.append(BatchNormalization)
            if draw(st.booleans()):
                layers.append(ReLU)  # fused into BatchNorm's kernels (fusion.NormReLU)
        if draw(st.booleans()):
            pool = dict(pool_size=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
                        strides=draw(st.one_of(st.none(), st.tuples(st.integers(1, 3),
                                                                    st.integers(1, 3)))),
                        padding=draw(st.sampled_from(["valid", "same"])))
            kind = draw(st.sampled_from([MaxPool2D, AveragePooling2D]))
            layers.append(lambda k=kind, p=pool: k(**p))
    head = draw(st.sampled_from([Flatten, GlobalAveragePooling2D]))
    layers.append(head)
    if draw(st.booleans()):
        units, act = draw(st.integers(1, 6)), draw(st.sampled_from(ACTIVATIONS))
        layers.append(lambda u=units, a=act: Dense(u, activation=a))
        if draw(st.booleans()):
            layers.append(lambda: Dropout(0.3))  # masks from fit's seed: the same everywhere
    classes = draw(st.integers(2, 4))
    layers.append(lambda: Dense(classes, activation="softmax"))
    # Adam and RMSprop divide by sqrt(v): in float32 a gradient that is zero up to rounding
    # becomes a full step either way, so float32 runs use SGD, float64 runs any optimizer.
    optimizers = [lambda: SGD(0.1), lambda: SGD(0.05, momentum=0.9),
                  lambda: SGD(0.05, momentum=0.9, nesterov=True)]
    if dtype == "float64":
        optimizers += [lambda: Adam(0.01), lambda: AdamW(0.01), lambda: RMSprop(0.01)]
    optimizer = draw(st.sampled_from(optimizers))
    batch = draw(st.integers(1, max_batch))
    # One sample: BatchNorm's output then has mean 0 over the image, so its global average
    # is 0 up to rounding and a ReLU after it flips on last-bit differences between the
    # backends (hypothesis found one). An ill-conditioned input, not a backend bug.
    assume(not (batch == 1 and BatchNormalization in layers and head is GlobalAveragePooling2D))
    return layers, shape, batch, classes, dtype, optimizer


@st.composite
def graphs(draw, max_side: int = 8, max_filters: int = 3, max_batch: int = 5):
    """A drawn graph, as ``models`` draws a stack: a stem, then blocks of every kind a graph
    has -- a residual block (identity or a strided 1x1 projection shortcut, Conv-BN-ReLU in
    the branch), a Concatenate of two branches, a layer called twice (shared weights), a
    tensor feeding three inputs of one Add -- and a head. ``case[0]`` is a function of the
    Input tensor that calls new layers on it (``build``)."""
    shape = (draw(st.integers(3, max_side)), draw(st.integers(3, max_side)),
             draw(st.integers(1, 2)))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    kinds = draw(st.lists(st.sampled_from(["residual", "projection", "concat", "shared",
                                           "fan-out"]), min_size=1, max_size=3))
    filters = [draw(st.integers(1, max_filters)) for _ in kinds]
    norm = dtype == "float64" and draw(st.booleans())  # as in ``models``: float64 only
    act = draw(st.sampled_from(["relu", "linear", "tanh"]))
    head = draw(st.sampled_from([Flatten, GlobalAveragePooling2D]))
    classes = draw(st.integers(2, 4))

    def make(x):
        c = filters[0]
        h = Conv2D(c, 3, padding="same", activation="relu")(x)
        for kind, f in zip(kinds, filters):
            if kind in ("residual", "projection"):
                stride = 2 if kind == "projection" else 1
                out = f if kind == "projection" else c
                r = Conv2D(out, 3, strides=stride, padding="same", use_bias=not norm)(h)
                if norm:
                    r = BatchNormalization()(r)
                r = Conv2D(out, 3, padding="same")(ReLU()(r))
                short = Conv2D(out, 1, strides=stride)(h) if kind == "projection" else h
                h, c = ReLU()(Add()([short, r])), out
            elif kind == "concat":
                h = Concatenate()([Conv2D(f, 1)(h),
                                   Conv2D(f, 3, padding="same", activation=act)(h)])
                c = 2 * f
            elif kind == "shared":
                twice = Conv2D(c, 3, padding="same", activation=act)
                h = twice(twice(h))
            else:
                h = Add()([h, ReLU()(h), MaxPool2D(3, strides=1, padding="same")(h)])
        return Dense(classes, activation="softmax")(head()(h))

    optimizers = [lambda: SGD(0.1), lambda: SGD(0.05, momentum=0.9)]
    if dtype == "float64":
        optimizers += [lambda: Adam(0.01), lambda: RMSprop(0.01)]
    return make, shape, draw(st.integers(1, max_batch)), classes, dtype, \
        draw(st.sampled_from(optimizers))


def build(case) -> Sequential | Model:
    """The model of a drawn case: a ``graphs`` case's Model, or a ``models`` stack."""
    layers, shape, *_ = case
    if callable(layers):
        x = Input(shape)
        return Model(x, layers(x), name="drawn")
    made = [make() for make in layers]
    made[0].input_shape = shape
    return Sequential(made, name="drawn")


def train(backend: str, case, steps: int = 2, seed: int = 0) -> list[np.ndarray]:
    _, shape, batch, classes, dtype, optimizer = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch * steps, *shape))
    y = rng.integers(0, classes, batch * steps)
    minicnn.set_floatx(dtype)
    try:
        with minicnn.use_backend(backend):
            model = build(case)
            model.compile(optimizer(), "sparse_categorical_crossentropy", ["accuracy"])
            model.fit(x, y, batch_size=batch, epochs=1, seed=seed, shuffle=False, verbose=0)
            return model.get_weights()
    finally:
        minicnn.set_floatx("float32")


def valid(case) -> bool:
    try:
        build(case).output_shape  # noqa: B018  (raises for kernels larger than their input)
    except ValueError:
        return False
    return True


def assert_same_training(backend: str, case) -> None:
    """The backend trains the case as the reference does: to 1e-8 in float64; in float32,
    to 2e-4 plus what float32 itself costs on this case (four times the reference's own
    distance from its float64 run): a few steps of SGD can amplify rounding past any fixed
    tolerance, on every backend alike (a ReLU's or a max's choice at a near-tie)."""
    assume(valid(case))
    expected, got = train("numpy", case), train(backend, case)
    exact = train("numpy", (*case[:4], "float64", *case[5:])) if case[4] == "float32" \
        else expected
    for e, g, x in zip(expected, got, exact):
        assert g.dtype == e.dtype
        tol = 1e-8 if case[4] == "float64" else 2e-4 + 4 * float(np.abs(e - x).max())
        np.testing.assert_allclose(g, e, rtol=tol, atol=tol)


def check_merge_kernels(fast, dtype, rows: int, ca: int, cb: int, inner: int, seed: int):
    """add_forward, add_backward, concatenate_forward and _backward against the reference."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, ca, inner)).astype(dtype)
    b = rng.standard_normal((rows, cb, inner)).astype(dtype)
    same = rng.standard_normal(a.shape).astype(dtype)
    compare(fast, "add_forward", (a, same), dtype)
    compare(fast, "concatenate_forward", (a, b), dtype)
    dy = rng.standard_normal((rows, ca + cb, inner)).astype(dtype)
    compare(fast, "concatenate_backward", (dy, ca), dtype)
