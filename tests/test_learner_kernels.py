"""A learner's kernels are what trains: for every kernel the checker knows, a module whose
version is slightly wrong (the reference's result, nudged) changes what fit computes, on
a model that uses it; the exact reference in a module trains to the reference's weights."""

import inspect
import types

import numpy as np
import pytest

import minicnn
from minicnn import Model, Sequential
from minicnn.backends.reference import NumpyBackend
from minicnn.check import CHECKS, UPDATED_IN_PLACE
from minicnn.layers import (
    Add,
    AveragePooling2D,
    BatchNormalization,
    Concatenate,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Input,
    MaxPool2D,
)
from minicnn.optimizers import SGD, Adam

REFERENCE = NumpyBackend()


def nudged(name: str):
    """The reference's kernel ``name`` with every float array it returns scaled by 1.01 (an
    update: its parameter moved by a further 1% of the gradient)."""
    right = getattr(REFERENCE, name)

    def scaled(a):
        is_float = isinstance(a, np.ndarray) and a.dtype.kind == "f"
        return a * a.dtype.type(1.01) if is_float else a

    def kernel(*args):
        result = right(*args)
        if name in UPDATED_IN_PLACE:
            args[0][...] -= args[0].dtype.type(0.01) * args[1]
            return result
        return tuple(map(scaled, result)) if isinstance(result, tuple) else scaled(result)

    kernel.__signature__ = inspect.signature(right)
    return kernel


def every_kind_of_layer() -> Model:
    """A graph that calls every kernel the checker knows: a tensor that fans out (its
    gradients summed with add_forward), a Concatenate and an Add."""
    x = Input((8, 8, 1))
    h = BatchNormalization()(AveragePooling2D(1)(MaxPool2D(2)(
        Conv2D(3, 3, activation="relu")(x))))
    h = Concatenate()([h, Conv2D(2, 1)(h)])
    h = Add()([h, Conv2D(5, 1, activation="tanh")(h)])
    h = Dropout(0.25)(Dense(5, activation="sigmoid")(Flatten()(h)))
    return Model(x, Dense(3, activation="softmax")(h))


def trained(module=None, optimizer=Adam) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 8, 8, 1)), rng.integers(0, 3, 16)
    with minicnn.use_backend(module or "numpy"):
        model = every_kind_of_layer()
        model.compile(optimizer(0.01), "sparse_categorical_crossentropy", ["accuracy"])
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=0)
        return model.get_weights()


def module_with(name: str, fn) -> types.ModuleType:
    module = types.ModuleType(f"learner_{name}")
    setattr(module, name, fn)
    return module


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_a_wrong_kernel_of_each_kind_changes_training(name):
    optimizer = SGD if name == "sgd_update" else Adam
    reference = trained(optimizer=optimizer)
    wrong = trained(module_with(name, nudged(name)), optimizer)
    assert any(not np.allclose(a, b, rtol=1e-6, atol=1e-9) for a, b in zip(reference, wrong)), \
        f"a wrong {name} trained exactly as the reference: the model never called it"
    right = trained(module_with(name, getattr(REFERENCE, name)), optimizer)
    for a, b in zip(reference, right):
        np.testing.assert_array_equal(a, b)


def test_fit_says_which_kernels_are_the_modules_and_which_did_not_run(capsys):
    module = module_with("dense_forward", REFERENCE.dense_forward)
    module.dense_backward = REFERENCE.dense_backward
    module.conv2d_forward = REFERENCE.conv2d_forward  # a Dense-only model never calls it
    rng = np.random.default_rng(0)
    with minicnn.use_backend(module) as backend:
        model = Sequential([Flatten(input_shape=(4, 4, 1)), Dense(3, activation="softmax")])
        model.compile("sgd", "sparse_categorical_crossentropy")
        with pytest.warns(UserWarning, match="conv2d_forward did not run in this fit"):
            model.fit(rng.random((8, 4, 4, 1)), rng.integers(0, 3, 8), epochs=1, verbose=2)
    assert "training with learner_dense_forward's conv2d_forward, dense_backward, " \
           "dense_forward" in capsys.readouterr().out
    assert backend.module_calls["dense_forward"] > 0 and backend.module_calls["dense_backward"]


def _returning(name: str, change):
    right = getattr(REFERENCE, name)

    def kernel(*args):
        return change(right(*args))

    kernel.__signature__ = inspect.signature(right)
    return kernel


@pytest.mark.parametrize("name, change, message", [
    ("dense_forward", lambda y: y.tolist(), r"dense_forward's result is a list, expected a "
                                            r"NumPy array"),
    ("dense_forward", lambda y: np.concatenate([y, y[:, :1]], axis=1),
     r"dense_forward's result has shape \(8, 6\), expected \(8, 5\)"),
    ("dense_backward", lambda r: (r[0], r[1], None), r"dense_backward's result 3 is a NoneType"),
    ("dense_backward", lambda r: r[:2], r"dense_backward returned 2 values, expected 3"),
    ("conv2d_forward", lambda y: y.astype(np.float64), r"has dtype float64, expected float32"),
    ("adam_update", lambda kept: None, r"adam_update returned None; an update returns how many"),
])
def test_a_learner_kernel_returning_the_wrong_kind_is_named_where_it_returns(name, change,
                                                                             message):
    """A list, an extra column, a missing or None output, another dtype, an update that
    returns nothing: fit stops at that kernel, naming it and what the reference returns,
    and the step it broke is undone."""
    with pytest.raises(TypeError, match=rf"the kernel {name} of 'learner_{name}': .*{message}"):
        trained(module_with(name, _returning(name, change)))
