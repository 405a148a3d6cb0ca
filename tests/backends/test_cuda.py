"""The CUDA backend on small shapes, fast enough for Numba's simulator (CI runs this file with
NUMBA_ENABLE_CUDASIM=1). On a machine with a GPU, the CUDA backend also joins every
parametrised test in test_gradients.py and test_equivalence.py; here it runs their checks
(``tests/helpers.py``) on small shapes."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import minicnn
from minicnn import Sequential
from minicnn.gradcheck import check_layer
from minicnn.layers import Conv2D, Dense, Flatten, MaxPool2D
from tests import helpers

pytestmark = [
    pytest.mark.skipif("cuda" not in minicnn.available_backends(),
                       reason="needs a GPU or NUMBA_ENABLE_CUDASIM=1 (CI sets it)"),
    # Dropout's draws wrap their 64-bit integers, as the GPU does silently; the simulator
    # runs them as NumPy scalars, which warn (the masks still match the reference's)
    pytest.mark.filterwarnings("ignore:overflow encountered in scalar:RuntimeWarning"),
    # the update and loss tests feed NaN and inf on purpose: the GPU computes with them
    # silently, the simulator's NumPy scalars warn (the results are checked all the same)
    pytest.mark.filterwarnings("ignore:invalid value encountered in scalar:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:divide by zero encountered in scalar:RuntimeWarning"),
]


@pytest.fixture
def cuda():
    with minicnn.use_backend("cuda") as backend:
        yield backend


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [((2, 4, 5, 2), (2, 3, 2, 3), (1, 1), "valid"),
                                  ((1, 5, 4, 1), (3, 2, 1, 2), (2, 2), "same")])
def test_conv_kernels_match_reference(cuda, case, dtype):
    helpers.check_conv_kernels(cuda, case, dtype)


@pytest.mark.parametrize("case", [((2, 5, 4, 2), (2, 2), (2, 2), "valid"),
                                  ((1, 5, 4, 2), (3, 2), (1, 1), "valid"),
                                  ((1, 3, 5, 2), (2, 2), (2, 2), "same")])
def test_pool_kernels_match_reference(cuda, case):
    helpers.check_pool_kernels(cuda, case, np.float32)
    helpers.check_max_pool_ties_and_nan_pick_the_reference_pixel(cuda, case, np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_activation_loss_and_update_kernels(cuda, dtype):
    helpers.check_dense_activation_loss_and_optimizer_kernels(cuda, dtype)
    helpers.check_optimizer_state_below_the_normal_floats_becomes_zero(cuda, dtype)


@pytest.mark.parametrize("update, states, args", helpers.UPDATES)
def test_updates_keep_what_would_not_be_finite(cuda, update, states, args):
    for dtype in (np.float32, np.float64):
        helpers.check_an_update_that_is_not_finite_keeps_the_old_values(
            cuda, dtype, update, states, args, size=40)


def test_one_hot_rows_from_class_indices(cuda):
    for rows, classes in ((1, 1), (5, 3), (70, 10)):
        helpers.check_one_hot_from_class_indices(cuda, np.float32, rows, classes)


@pytest.mark.parametrize("rows, ca, cb, inner", [(1, 1, 1, 1), (5, 3, 2, 7), (33, 1, 4, 3)])
def test_merge_kernels(cuda, rows, ca, cb, inner):
    for dtype in (np.float32, np.float64):
        helpers.check_merge_kernels(cuda, dtype, rows, ca, cb, inner, seed=rows)


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])
@given(case=helpers.graphs(max_side=5, max_filters=2, max_batch=3))
def test_random_graphs_train_like_the_reference(case):
    """Residual blocks, projections, Concatenate, shared layers and fan-outs on the device:
    the weights the reference computes (test_properties.py's graphs, simulator-sized)."""
    helpers.assert_same_training("cuda", case)


def test_dropout_mask(cuda):
    for shape, rate in (((7, 3), 0.25), ((1000,), 0.9)):
        helpers.check_dropout_draws_the_reference_mask(cuda, np.float32, shape, rate)


def test_smoothed_labels(cuda):
    for smoothing, uniform in ((0.1, 0.1), (0.25, 0.5)):
        helpers.check_smooth_labels(cuda, np.float32, smoothing, uniform)


@pytest.mark.parametrize("rows", [5, 70])  # 70: more rows than a simulated block has threads
def test_loss_totals_halt_flag_and_row_gather(cuda, rows):
    """The loss kernel of CUDA's tally: the gradient, (loss sum, hits) and the NaN flag,
    which then stops every update kernel (``guarded_update``); take_rows gathers rows in any
    order."""
    from minicnn.backends.cuda.losses import softmax_cross_entropy_totals
    from minicnn.backends.cuda.optimizers import guarded_update
    reference = minicnn.backends.load("numpy")
    rng = np.random.default_rng(rows)
    logits = (30 * rng.standard_normal((rows, 4))).astype(np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, rows)]
    for poison in (False, True):
        if poison:
            logits[rows // 2, 1] = np.nan
        losses, grad = reference.softmax_cross_entropy(logits, y)
        totals, flag = cuda.to_device(np.zeros(2)), cuda.to_device(np.zeros(1, np.int32))
        dz = softmax_cross_entropy_totals(cuda.to_device(logits), cuda.to_device(y), totals, flag)
        assert cuda.to_host(flag)[0] == int(poison)
        if not poison:
            np.testing.assert_allclose(cuda.to_host(dz), grad, rtol=2e-4, atol=2e-4)
            np.testing.assert_allclose(cuda.to_host(totals), [losses.sum(), reference.count_correct(
                logits, y, 0.0)], rtol=2e-4)
        p = rng.standard_normal(7).astype(np.float32)
        state = [cuda.to_device(a.astype(np.float32)) for a in (p, p, np.zeros(7), np.zeros(7))]
        with guarded_update(flag):
            cuda.adam_update_many([state[0]], [state[1]], [state[2]], [state[3]], 0.1, 0.9,
                                  0.999, 1e-7)
            cuda.sgd_update(state[1], state[0], state[2], 0.1, 0.9, False)
        assert np.array_equal(cuda.to_host(state[0]), p) == poison
        assert np.array_equal(cuda.to_host(state[1]), p) == poison
    order = rng.permutation(rows)
    out = cuda.zeros_like(cuda.to_device(logits))
    assert np.array_equal(cuda.to_host(cuda.take_rows(cuda.to_device(logits), cuda.to_device(order),
                                                      out)), logits[order], equal_nan=True)


def test_launches_are_checked_against_the_kernels_signatures(cuda):
    """Kernels are compiled for explicit signatures (numba-cuda then launches them without
    checking anything); under the simulator every launch is checked instead."""
    from minicnn.backends.cuda import memory as module
    every_other = cuda.to_device(np.zeros(8, np.float32))[::2]  # strided: not C-contiguous
    with pytest.raises(TypeError, match="fill_device: argument 0 is array.*declares"):
        module.fill_device[1, 32](every_other, 0.0)
    with pytest.raises(TypeError, match="fill_device: argument 1 is int64"):
        module.fill_device[1, 32](cuda.to_device(np.zeros(4, np.float32)), 0)


def test_softmax_cross_entropy_stays_finite_for_extreme_logits(cuda):
    z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[[1, 2]]
    rows, grad = cuda.softmax_cross_entropy(cuda.to_device(z), cuda.to_device(y))
    np.testing.assert_allclose(cuda.to_host(rows), [2e4, 0], atol=1e-6)
    assert np.all(np.isfinite(cuda.to_host(grad)))


@pytest.mark.parametrize("make, shape", [
    (lambda: Conv2D(2, (2, 2), strides=2, padding="same", activation="relu"), (1, 3, 3, 2)),
    (lambda: MaxPool2D((2, 2), strides=1), (1, 3, 3, 1)),
    (lambda: Dense(3, activation="sigmoid"), (2, 3)),
])
def test_gradients_float64(cuda, float64, make, shape):
    x = np.random.default_rng(4).standard_normal(shape)
    errors = check_layer(make(), x)
    assert max(errors.values()) < 1e-6, errors


def test_training_steps_match_reference(float64):
    x = np.random.default_rng(5).random((4, 5, 5, 1))
    y = np.array([0, 1, 2, 1])
    weights = {}
    for name in ("numpy", "cuda"):
        with minicnn.use_backend(name):
            model = Sequential([Conv2D(2, (2, 2), activation="relu", input_shape=(5, 5, 1)),
                                MaxPool2D((2, 2)), Flatten(), Dense(3, activation="softmax")])
            model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
            history = model.fit(x, y, batch_size=2, epochs=2, seed=0, verbose=0)
            weights[name] = model.get_weights() + [np.array(history.history["loss"])]
    for ref, got in zip(weights["numpy"], weights["cuda"]):
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])
@given(case=helpers.models(max_side=6, max_filters=3, max_batch=5))
def test_random_models_train_like_the_reference(case):
    """The property of test_properties.py, on shapes small enough for the simulator."""
    helpers.assert_same_training("cuda", case)


def test_small_model_trains_like_the_reference_over_many_steps():
    """Once trained to NaN under the simulator: a cached launch configuration kept the last
    grid size set, so a later large ReLU ran on too few blocks and left garbage. Also runs
    every kind of step the step buffers keep apart (training batches of 3 and a last one
    of 2, validation, prediction), interleaved."""
    rng = np.random.default_rng(3)
    x = rng.random((8, 6, 6, 1), dtype=np.float32)
    y = rng.integers(0, 3, 8)
    results = {}
    for name in ("numpy", "cuda"):
        with minicnn.use_backend(name):
            model = Sequential([Conv2D(3, (3, 3), activation="relu", input_shape=(6, 6, 1)),
                                MaxPool2D((2, 2)), Flatten(), Dense(5, activation="relu"),
                                Dense(3, activation="softmax")])
            model.compile("sgd", "sparse_categorical_crossentropy", ["accuracy"])
            history = model.fit(x, y, batch_size=3, epochs=2, verbose=0, seed=7, shuffle=False,
                                validation_data=(x[:5], y[:5]))
            predicted = model.predict(x, batch_size=3)
            model.fit(x, y, batch_size=3, epochs=1, verbose=0, seed=7, shuffle=False)
            results[name] = history.history, predicted, model.get_weights()
    for key in ("loss", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(results["cuda"][0][key], results["numpy"][0][key], rtol=1e-5)
    np.testing.assert_allclose(results["cuda"][1], results["numpy"][1], rtol=1e-4, atol=1e-6)
    for got, ref in zip(results["cuda"][2], results["numpy"][2]):
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)


def test_set_weights_on_a_placed_model_reaches_the_device():
    """set_weights after training on the device: the next fit starts from what was set."""
    x = np.random.default_rng(6).random((4, 3)).astype(np.float32)
    y = np.array([0, 1, 0, 1])
    results = {}
    for name in ("numpy", "cuda"):
        with minicnn.use_backend(name):
            model = Sequential([Dense(2, activation="softmax", input_shape=(3,))])
            model.compile("sgd", "sparse_categorical_crossentropy")
            model.fit(x, y, epochs=1, verbose=0, seed=0)
            model.layers[0].set_weights([np.ones((3, 2)), np.zeros(2)])
            np.testing.assert_array_equal(model.get_weights()[0], np.ones((3, 2)))
            model.fit(x, y, epochs=1, verbose=0, seed=0)
            results[name] = model.get_weights()
    for got, ref in zip(results["cuda"], results["numpy"]):
        np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_host_fallback_keeps_aliased_arguments_aliased(cuda):
    """AdamW's decay calls add_scaled(p, p, -lr wd): both arguments are one array."""
    p = cuda.to_device(np.array([1.0, 2.0]))
    cuda.add_scaled(p, p, -0.5)
    np.testing.assert_array_equal(cuda.to_host(p), [0.5, 1.0])


def _cnn_b_shaped():
    """cnn_b's layer stack (three convs, two pools, two dense, Adam), simulator-sized."""
    model = Sequential([
        Conv2D(2, (3, 3), activation="relu", input_shape=(12, 12, 1)), MaxPool2D((2, 2)),
        Conv2D(2, (2, 2), activation="relu"), MaxPool2D((2, 2)),
        Conv2D(4, (2, 2), activation="relu"),
        Flatten(), Dense(4, activation="relu"), Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    return model


def _counted(monkeypatch, run) -> dict:
    """Counts, under the simulator, of what ``run()`` does: device allocations, kernel
    launches, host arrays handed to kernels (each an implicit copy), device-to-host copies,
    and device array views made by the host (reshapes and slices: numba-cuda builds each
    in Python)."""
    import sys
    import threading

    from numba import cuda as numba_cuda
    from numba.cuda.simulator import kernel as sim_kernel
    from numba.cuda.simulator.cudadrv import devicearray as sim_array

    counts = dict.fromkeys(["allocations", "launches", "host_arguments", "to_host", "views"], 0)
    host = threading.main_thread()  # the simulator runs GPU threads as Python threads

    def host_view(array, index):
        """A view made by minicnn's host code (not by a simulated GPU thread, nor inside
        numba's own copy functions)."""
        caller = sys._getframe(2).f_code.co_filename
        return (threading.current_thread() is host and "site-packages" not in caller
                and not np.isscalar(array._ary[index]))

    def counting(owner, name, key, count=lambda *args: 1):
        original = getattr(owner, name)

        def counted(*args, **kwargs):
            counts[key] += count(*args)
            return original(*args, **kwargs)
        monkeypatch.setattr(owner, name, counted)

    with monkeypatch.context() as patch:
        monkeypatch = patch
        counting(numba_cuda, "device_array", "allocations")
        counting(numba_cuda, "to_device", "allocations")
        counting(sim_array.FakeCUDAArray, "copy_to_host", "to_host")
        counting(sim_kernel.FakeCUDAKernel, "__call__", "launches",
                 lambda kernel, *args: 0 if kernel._device else 1)
        # host arrays handed to a launch (a device function's arguments are on the GPU)
        counting(sim_kernel.FakeCUDAKernel, "__call__", "host_arguments",
                 lambda kernel, *args: 0 if kernel._device else sum(
                     isinstance(a, np.ndarray) and a.ndim > 0 for a in args))
        counting(sim_array.FakeCUDAArray, "reshape", "views",
                 lambda array, *shape: "site-packages" not in sys._getframe(2).f_code.co_filename)
        counting(sim_array.FakeCUDAArray, "__getitem__", "views", host_view)
        run()
    return counts


def test_a_training_step_allocates_nothing_after_the_first(cuda, monkeypatch):
    """One cnn_b-shaped train_on_batch step, counted."""
    model = _cnn_b_shaped()
    rng = np.random.default_rng(0)
    x, y = rng.random((4, 12, 12, 1), dtype=np.float32), rng.integers(0, 3, 4)
    model.train_on_batch(x, y)  # the first step allocates its buffers
    before = model.get_weights()
    step = _counted(monkeypatch, lambda: model.train_on_batch(x, y))
    assert not all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert step["allocations"] == step["host_arguments"] == 0, step
    # this call's new tally (fit keeps its own): its rows, its row and its flag (a slice of
    # an int32 view of the last row: one buffer, so that one copy reads both)
    assert step["views"] <= 4, step
    # The targets, measured on this model: 20 launches (8 forward with the loss and its hit
    # count in one, reading the class indices as they are; 11 backward; 1 Adam for every
    # parameter) and 1 copy (the loss sum, the hits and the flag, together).
    assert step["launches"] <= 20, step
    assert step["to_host"] <= 1, step


def test_fit_steps_copy_nothing_and_read_the_loss_once(cuda, monkeypatch):
    """fit on data uploaded once: two fits that differ only in their number of epochs
    (two steps each), counted; the difference is what an epoch costs after the first: its
    shuffle (one gather per array, into buffers kept for the fit), its steps (no allocation,
    no copy either way, no host array, no new view, at most 20 launches each) and one read
    of the loss (the read interval is made endless here; by default it is 0.1 s)."""
    from minicnn.backends.cuda.tally import DeviceTally
    monkeypatch.setattr(DeviceTally, "READ_INTERVAL", float("inf"))
    model = _cnn_b_shaped()
    rng = np.random.default_rng(0)
    x, y = rng.random((4, 12, 12, 1), dtype=np.float32), rng.integers(0, 3, 4)
    model.fit(x, y, batch_size=2, verbose=0, seed=0)  # the first fit makes the weights' state
    one, three = (_counted(monkeypatch, lambda e=e: model.fit(x, y, batch_size=2, epochs=e,
                                                              verbose=0, seed=0))
                  for e in (1, 3))
    extra = {key: (three[key] - one[key]) / 2 for key in one}  # per epoch after the first
    assert extra["allocations"] == extra["host_arguments"] == extra["views"] == 0, extra
    assert extra["to_host"] == 1, extra
    assert extra["launches"] <= 2 + 2 * 20, extra


def test_deferred_nan_guard_stops_like_the_reference(monkeypatch):
    """A loss that turns NaN is seen on the device at once (the Adam kernel then changes
    nothing) and on the host only at the next read: fit still stops with the weights, step
    count and history of the reference, which reads every step."""
    from minicnn.backends.cuda.tally import DeviceTally
    monkeypatch.setattr(DeviceTally, "READ_INTERVAL", float("inf"))
    rng = np.random.default_rng(1)
    x, y = 100 * rng.standard_normal((12, 6)), rng.integers(0, 3, 12)
    results = {}
    for name in ("numpy", "cuda"):
        with minicnn.use_backend(name):
            model = Sequential([Dense(8, activation="relu", input_shape=(6,)),
                                Dense(3, activation="softmax")])
            model.compile(minicnn.optimizers.Adam(1e30), "sparse_categorical_crossentropy",
                          ["accuracy"])
            with pytest.warns(RuntimeWarning, match="fit stopped at epoch 1, step"):
                history = model.fit(x, y, batch_size=2, epochs=2, verbose=0, seed=0)
            results[name] = history.history, model.optimizer.iterations, model.get_weights()
    for key, ref in results["numpy"][0].items():
        np.testing.assert_allclose(results["cuda"][0][key], ref, rtol=1e-5)  # NaN == NaN
    assert not np.isfinite(results["numpy"][0]["loss"][0])
    assert results["cuda"][1] == results["numpy"][1] < 6  # the steps applied
    for got, ref in zip(results["cuda"][2], results["numpy"][2]):
        np.testing.assert_allclose(got, ref, rtol=1e-5)


@pytest.mark.parametrize("make", [lambda: minicnn.optimizers.Adam(3e38),
                                  lambda: minicnn.optimizers.SGD(1e10),
                                  lambda: minicnn.optimizers.AdamW(1e38, weight_decay=1e3)])
def test_deferred_guard_undoes_an_update_that_overflows(monkeypatch, make):
    """An update past float32's largest number with a finite loss, after good steps: the
    kernel flags the step with its stamp, the steps after it change nothing, and the host,
    at the next read, undoes that step whole from what the kernels saved: the weights,
    optimizer state and moving statistics are bit for bit those from before it, and the
    step count is the reference's (which undoes the step at once)."""
    from minicnn.backends.cuda.tally import DeviceTally
    from minicnn.layers import BatchNormalization
    from minicnn.regularizers import L2
    monkeypatch.setattr(DeviceTally, "READ_INTERVAL", float("inf"))
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 4)), np.arange(8) % 3
    iterations = {}
    for name in ("numpy", "cuda"):
        with minicnn.use_backend(name):
            model = Sequential([Dense(5, input_shape=(4,)), BatchNormalization(),
                                Dense(3, activation="softmax")])
            optimizer = make()
            model.compile(optimizer, "sparse_categorical_crossentropy")
            rate = optimizer.learning_rate
            optimizer.learning_rate = 1e-3
            model.fit(x, y, batch_size=2, epochs=1, verbose=0, seed=0, shuffle=False)
            optimizer.learning_rate = rate
            model.layers[-1].kernel_regularizer = L2(1e30)
            before = [*model.get_weights(), *model.optimizer.state_arrays().values()]
            with pytest.warns(RuntimeWarning, match="update would have made weights"):
                model.fit(x, y, batch_size=2, epochs=2, verbose=0, shuffle=False)
            after = [*model.get_weights(), *model.optimizer.state_arrays().values()]
            for a, b in zip(before, after, strict=True):
                np.testing.assert_array_equal(a, b)
            iterations[name] = model.optimizer.iterations
    assert iterations["cuda"] == iterations["numpy"] == 4


@pytest.mark.parametrize("kernel", ["adam_update_many", "moving_average"])
def test_a_step_that_raises_part_way_is_undone(monkeypatch, kernel):
    """Adam's launch ran, then the step raised; or BatchNorm's second moving average
    raised after the first was applied: everything is as before the step."""
    from minicnn.layers import BatchNormalization
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 4)), np.arange(8) % 3
    with minicnn.use_backend("cuda") as cuda:
        model = Sequential([Dense(5, input_shape=(4,)), BatchNormalization(),
                            Dense(3, activation="softmax"), BatchNormalization()])
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, seed=0)
        before = [*model.get_weights(), *model.optimizer.state_arrays().values()]
        original, calls = getattr(cuda, kernel), []

        def failing(*args):
            calls.append(1)
            original(*args)
            if len(calls) == (1 if kernel == "adam_update_many" else 2):
                raise MemoryError("say")

        monkeypatch.setattr(cuda, kernel, failing)
        with pytest.raises(MemoryError):
            model.fit(x, y, batch_size=4, epochs=1, verbose=0)
        after = [*model.get_weights(), *model.optimizer.state_arrays().values()]
        assert model.optimizer.iterations == 2
        for a, b in zip(before, after, strict=True):
            np.testing.assert_array_equal(a, b)


def test_looking_inside_reads_back_what_the_reference_sees():
    """feature_maps, saliency, LayerStats and profile on the GPU backend: the same numbers
    as the reference's, read back to the host."""
    from minicnn import inspect
    from minicnn.callbacks import LayerStats
    rng = np.random.default_rng(6)
    x, y = rng.random((3, 6, 6, 1), dtype=np.float32), np.array([0, 1, 2])
    results = {}
    for name in ("numpy", "cuda"):
        with minicnn.use_backend(name):
            model = Sequential([Conv2D(2, (3, 3), activation="relu", input_shape=(6, 6, 1)),
                                MaxPool2D((2, 2)), Flatten(), Dense(3, activation="softmax")])
            # the same fused plan on both (the numpy backend runs the reference's fusions)
            model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"], fuse=True)
            model.build(seed=0)
            stats = LayerStats(every=1)
            model.fit(x, y, batch_size=3, epochs=1, verbose=0, seed=0, callbacks=[stats])
            rows = model.profile(x, y, steps=2)
            results[name] = (inspect.feature_maps(model, x), inspect.saliency(model, x),
                             stats.records, rows)
    (maps, sal, records, rows), (cmaps, csal, crecords, crows) = results["numpy"], results["cuda"]
    for key in maps:
        np.testing.assert_allclose(cmaps[key], maps[key], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(csal, sal, rtol=1e-3, atol=1e-5)
    assert [(r["layer"], r["kind"]) for r in crecords] == [(r["layer"], r["kind"])
                                                           for r in records]
    for got, want in zip(crecords, records):
        assert got["mean"] == pytest.approx(want["mean"], rel=1e-3, abs=1e-6)
    assert [r["layer"] for r in crows] == [r["layer"] for r in rows]
    assert [r["flops"] for r in crows] == [r["flops"] for r in rows]


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_sparse_labels_are_read_by_the_loss_kernel(cuda, smoothing):
    """Class indices straight into the loss (no one-hot rows, no smoothed copy): the
    reference's gradient, loss sum and hits against the smoothed one-hot targets."""
    from minicnn.backends.cuda.losses import sparse_softmax_cross_entropy_totals
    reference = minicnn.backends.load("numpy")
    rng = np.random.default_rng(5)
    logits = (10 * rng.standard_normal((70, 4))).astype(np.float32)
    labels = rng.integers(0, 4, 70)
    onehot = np.eye(4, dtype=np.float32)[labels]
    target = reference.smooth_labels(onehot, smoothing, 0.25) if smoothing else onehot
    losses, grad = reference.softmax_cross_entropy(logits, target)
    totals, flag = cuda.to_device(np.zeros(2)), cuda.to_device(np.zeros(1, np.int32))
    dz = sparse_softmax_cross_entropy_totals(cuda.to_device(logits),
                                             cuda.to_device(labels.astype(np.float32)),
                                             smoothing, totals, flag)
    np.testing.assert_allclose(cuda.to_host(dz), grad, rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(cuda.to_host(totals), [losses.sum(), reference.count_correct(
        logits, onehot, 0.0)], rtol=2e-4)
    assert cuda.to_host(flag)[0] == 0
