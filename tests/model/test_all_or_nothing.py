"""A training step is all or nothing: a step whose loss or update is not finite, or that
raises part-way, leaves the weights, the optimizer's state and step count and BatchNorm's
moving statistics as they were before it, and says so."""

import sys
import warnings

import numpy as np
import pytest

import minicnn
from minicnn import Sequential
from minicnn.layers import BatchNormalization, Conv2D, Dense, Flatten, ReLU
from minicnn.optimizers import SGD, Adam, AdamW, RMSprop
from minicnn.regularizers import L2


def _everything(model) -> list[np.ndarray]:
    """Weights, moving statistics and optimizer slots, copied, and the step count."""
    return ([w.copy() for w in model.get_weights()]
            + [a.copy() for a in model.optimizer.state_arrays().values()]
            + [np.array(model.optimizer.iterations)])


def _assert_unchanged(before, model):
    after = _everything(model)
    assert len(before) == len(after)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


def _model(optimizer, regularizer=None):
    model = Sequential([Conv2D(2, 3, input_shape=(6, 6, 1), kernel_regularizer=regularizer),
                        BatchNormalization(), ReLU(), Flatten(),
                        Dense(3, activation="softmax", kernel_regularizer=regularizer)])
    model.compile(optimizer, "sparse_categorical_crossentropy")
    return model


def _data():
    rng = np.random.default_rng(0)
    return rng.random((8, 6, 6, 1)), rng.integers(0, 3, 8)


@pytest.mark.parametrize("backend", ["numpy", "numba", "cython"])
@pytest.mark.parametrize("make", [lambda: SGD(1e10), lambda: SGD(1e10, momentum=0.5),
                                  lambda: RMSprop(1e38), lambda: AdamW(1e38, weight_decay=1e3)])
def test_an_update_that_overflows_is_undone_whole(backend, make):
    """A finite loss, but a step past float32's largest number (a huge L2 penalty's gradient
    times the learning rate) in some elements only: fit stops, says the step was undone,
    and nothing of it stays -- the elements that would have stayed finite included."""
    x, y = _data()
    with minicnn.use_backend(backend):
        model = _model(make(), L2(1e30))
        model.build(seed=0)
        before = _everything(model)
        with pytest.warns(RuntimeWarning, match=r"NaN or inf .* step was undone"):
            history = model.fit(x, y, batch_size=4, epochs=3, verbose=0, seed=0)
        assert np.isfinite(history.history["loss"]).all()
        _assert_unchanged(before, model)
        # carrying on past it (terminate_on_nan=False) undoes every such step
        model.fit(x, y, batch_size=4, epochs=2, verbose=0, terminate_on_nan=False)
        _assert_unchanged(before, model)


def test_an_update_that_overflows_after_good_steps_keeps_those_steps():
    """Good steps first (a small rate), then one that overflows: the weights are those the
    good steps made, bit for bit, and the step count is theirs."""
    x, y = _data()
    reference = _model(SGD(0.1))
    reference.fit(x, y, batch_size=4, epochs=1, verbose=0, seed=0, shuffle=False)
    model = _model(SGD(0.1))
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, seed=0, shuffle=False)
    model.optimizer.learning_rate = 1e38
    model.layers[-1].kernel_regularizer = L2(1e30)
    before = _everything(model)
    with pytest.warns(RuntimeWarning, match="undone"):
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    _assert_unchanged(before, model)
    for a, b in zip(reference.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


class _Failing(Exception):
    pass


@pytest.mark.parametrize("backend", ["numpy", "numba", "cython"])
@pytest.mark.parametrize("make, kernel", [(lambda: SGD(0.1, momentum=0.9), "sgd_update"),
                                          (lambda: RMSprop(0.01), "rmsprop_update"),
                                          (lambda: AdamW(0.01), "adam_update_many"),
                                          (lambda: Adam(0.01), "moving_average")])
def test_a_step_that_raises_part_way_is_undone(backend, make, kernel, monkeypatch):
    """The third call of an update kernel raises (a MemoryError, a learner's bug) after
    others wrote their weights; or BatchNorm's second moving average raises after the first
    was applied: the error reaches the caller, saying the step was undone, and every weight,
    slot, statistic and the step count are those from before the step."""
    x, y = _data()
    with minicnn.use_backend(backend) as live:
        model = _model(make())
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, seed=0)  # slots exist
        before = _everything(model)
        original, calls = getattr(live, kernel), []

        def failing(*args):
            calls.append(1)
            if len(calls) == (1 if kernel == "adam_update_many" else 2):
                raise _Failing("out of memory, say")
            return original(*args)

        monkeypatch.setattr(live, kernel, failing)
        with pytest.raises(_Failing) as caught:
            model.fit(x, y, batch_size=4, epochs=1, verbose=0)
        _assert_unchanged(before, model)
        if sys.version_info >= (3, 11):
            assert "step was undone" in "".join(caught.value.__notes__)
        calls.clear()
        with pytest.raises(_Failing):
            model.train_on_batch(x, y)
        _assert_unchanged(before, model)
        monkeypatch.setattr(live, kernel, original)
        model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # and it trains on afterwards
        assert model.optimizer.iterations == before[-1] + 2


def test_a_first_step_that_raises_leaves_no_optimizer_slots(monkeypatch):
    x, y = _data()
    model = _model(Adam())
    live = minicnn.get_backend()

    def failing(*args):
        raise _Failing("no")

    monkeypatch.setattr(live, "adam_update_many", failing)
    with pytest.raises(_Failing):
        model.fit(x, y, verbose=0, seed=0)
    assert model.optimizer.slots == {} and model.optimizer.iterations == 0


def test_a_non_finite_update_in_train_on_batch_changes_nothing():
    x, y = _data()
    model = _model(SGD(1e38), L2(1e30))
    model.build(seed=0)
    before = _everything(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.train_on_batch(x, y)
    _assert_unchanged(before, model)
