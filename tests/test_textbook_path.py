"""The textbook is what runs: on the numpy backend (and with ``compile(fuse=False)`` on any)
fit calls each layer's own forward and backward, and the kernels a learner's module
defines; the fast backends' fused plans train to the same weights."""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import minicnn
from minicnn import Sequential
from minicnn.backends.reference import conv as reference_conv
from minicnn.layers import BatchNormalization, Conv2D, Dense, Flatten, MaxPool2D, ReLU
from minicnn.optimizers import SGD, Adam, AdamW, RMSprop
from tests.helpers import BACKENDS, FAST_BACKENDS, ROOT, synthetic_images


def bn_relu_cnn(seed_shape=(8, 8, 1)) -> Sequential:
    return Sequential([Conv2D(4, 3, activation="relu", input_shape=seed_shape), MaxPool2D(),
                       Conv2D(4, 3, padding="same", use_bias=False), BatchNormalization(),
                       ReLU(), Flatten(), Dense(8, activation="relu"),
                       Dense(4, activation="softmax")])


def trained_weights(backend, fuse=None, epochs=2) -> list[np.ndarray]:
    x, y = synthetic_images(48, 8)
    with minicnn.use_backend(backend):
        model = bn_relu_cnn()
        model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"], fuse=fuse)
        model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, seed=3)
        return model.get_weights()


def test_the_numpy_backend_runs_every_layer_on_its_own():
    with minicnn.use_backend("numpy"):
        model = bn_relu_cnn()
        model.compile("adam", "sparse_categorical_crossentropy")
        assert model.stages()[:-1] == model.layers[:-1]  # the layers themselves
        assert type(model.stages()[-1]).__name__ == "Logits"  # softmax inside the loss


def test_fit_reaches_the_reference_convolution_through_the_layers_backward():
    """From fit to reference/conv.py's conv2d_backward in four frames, the layer's own."""
    stacks = []

    def watch(frame, event, arg):
        if event == "call" and frame.f_code is reference_conv.conv2d_backward.__code__:
            callers, caller = [], frame.f_back
            while caller is not None and len(callers) < 5:
                callers.append(caller.f_code.co_name)
                caller = caller.f_back
            stacks.append(callers)

    x, y = synthetic_images(16, 8)
    with minicnn.use_backend("numpy"):
        model = Sequential([Conv2D(2, 3, activation="relu", input_shape=(8, 8, 1)), Flatten(),
                            Dense(4, activation="softmax")])
        model.compile("sgd", "sparse_categorical_crossentropy")
        sys.setprofile(watch)
        try:
            model.fit(x, y, epochs=1, batch_size=16, verbose=0)
        finally:
            sys.setprofile(None)
    assert stacks, "fit never reached the reference's conv2d_backward"
    # Conv2D.backward, called by the plan's backward (fusion.Plan.backward), by the step
    assert stacks[0][:5] == ["backward", "backward", "run_step", "_fit_loop", "fit"], stacks[0]


@pytest.mark.parametrize("name", FAST_BACKENDS)
def test_a_fast_backend_fused_or_not_trains_as_the_textbook(name):
    expected = trained_weights("numpy")
    for fuse in (None, False):
        for e, g in zip(expected, trained_weights(name, fuse)):
            np.testing.assert_allclose(g, e, rtol=2e-4, atol=2e-5)


def test_compile_refuses_a_fuse_that_is_not_a_bool():
    with pytest.raises(ValueError, match="fuse must be None, True or False"):
        bn_relu_cnn().compile("adam", fuse="yes")


@pytest.mark.skipif("numba" not in BACKENDS, reason="numba not available")
def test_numba_without_the_jit_computes_what_the_jit_does(tmp_path):
    """NUMBA_DISABLE_JIT=1 (stepping through a kernel in a debugger) trains the same model."""
    script = tmp_path / "train.py"
    script.write_text(
        "import json, sys\n"
        "from tests.test_textbook_path import trained_weights\n"
        "json.dump([w.tolist() for w in trained_weights('numba', epochs=1)], sys.stdout)\n")
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    without_jit = [np.array(w) for w in json.loads(run.stdout)]
    for e, g in zip(trained_weights("numba", epochs=1), without_jit):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("optimizer", [SGD, Adam, AdamW, RMSprop])
def test_a_first_step_that_diverges_warns_and_stops(backend, optimizer):
    """Finite weights whose loss is not (3e38 kernels): fit warns, keeps them, stops."""
    x, y = synthetic_images(16, 8)
    model = Sequential([Flatten(input_shape=(8, 8, 1)), Dense(4, activation="softmax")])
    model.compile(optimizer(), "sparse_categorical_crossentropy")
    model.build(seed=0)
    kernel, bias = model.layers[1].get_weights()
    model.layers[1].set_weights([np.full_like(kernel, 3e38), bias])
    before = model.get_weights()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    assert any("fit stopped at epoch 1, step 1" in str(w.message) for w in caught)
    assert len(history.history["loss"]) == 1 and model.optimizer.iterations == 0
    for b, a in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
