"""The optimizers and learning-rate schedules, against their formulas."""



import numpy as np
import pytest

from minicnn import load_model
from minicnn.layers import (
    Dense,
)
from minicnn.optimizers import (
    SGD,
    AdamW,
    CosineDecay,
    ExponentialDecay,
    PiecewiseConstantDecay,
    RMSprop,
)
from tests.helpers import bn_cnn, synthetic_images


def _one_step(optimizer, p, g):
    layer = Dense(p.shape[1], use_bias=False)
    layer.build((p.shape[0],))
    layer.set_weights([p])
    layer.grads = {"kernel": g.astype(np.float32)}
    optimizer.apply([layer])
    return layer.get_weights()[0]


def test_rmsprop_adamw_and_nesterov_follow_their_formulas(rng):
    p, g = rng.standard_normal((3, 2)).astype(np.float32), rng.standard_normal((3, 2))
    v = 0.1 * g**2
    np.testing.assert_allclose(_one_step(RMSprop(0.01), p, g),
                               p - 0.01 * g / np.sqrt(v + 1e-7), rtol=1e-5)
    decayed = p * (1 - 0.01 * 0.1)
    adam_step = 0.01 * g / (np.abs(g) + 1e-7)  # Adam's first step: lr * sign(g)
    np.testing.assert_allclose(_one_step(AdamW(0.01, weight_decay=0.1), p, g),
                               decayed - adam_step, rtol=1e-4, atol=1e-6)
    velocity = -0.1 * g
    np.testing.assert_allclose(_one_step(SGD(0.1, momentum=0.9, nesterov=True), p, g),
                               p + 0.9 * velocity - 0.1 * g, rtol=1e-5)


def test_schedules():
    exp = ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    assert exp(0) == 0.1 and exp(10) == pytest.approx(0.05)
    assert exp(5) == pytest.approx(0.1 / 2**0.5)
    assert ExponentialDecay(0.1, 10, 0.5, staircase=True)(19) == pytest.approx(0.05)
    cos = CosineDecay(1.0, decay_steps=100, alpha=0.1)
    assert cos(0) == 1.0 and cos(100) == pytest.approx(0.1) and cos(500) == pytest.approx(0.1)
    assert cos(50) == pytest.approx(0.55)
    pw = PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1])
    assert [pw(s) for s in (0, 10, 11, 20, 21)] == [1.0, 1.0, 0.5, 0.5, 0.1]
    with pytest.raises(ValueError):
        PiecewiseConstantDecay([10], [1.0])


def test_an_optimizer_with_a_schedule_trains_saves_and_loads(tmp_path):
    x, y = synthetic_images(32, 8)
    model = bn_cnn()
    opt = SGD(learning_rate=ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5))
    model.compile(opt, "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=0)
    assert opt.current_learning_rate() == pytest.approx(0.1 * 0.5 ** 2)  # after 4 steps
    model.save(tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    assert loaded.optimizer.current_learning_rate() == pytest.approx(0.025)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(loaded.predict(x), model.predict(x), rtol=1e-6)
