import numpy as np
import pytest

from minicnn import Sequential
from minicnn.augment import (
    ImageDataGenerator,
    draw_shifts,
    random_flip,
    random_shift,
    shift_images,
)
from minicnn.layers import Dense, Flatten

IMAGES = np.arange(2 * 3 * 4).reshape(2, 3, 4)


class FixedRng:
    """Stands in for a Generator: fixed flip draws, to compare with hand-computed arrays."""

    def __init__(self, uniform):
        self._uniform = list(uniform)

    def random(self, n):
        return np.asarray(self._uniform.pop(0))


def test_flip_by_hand():
    out = random_flip(IMAGES, rng=FixedRng([[0.2, 0.9]]))
    np.testing.assert_array_equal(out[0], [[3, 2, 1, 0], [7, 6, 5, 4], [11, 10, 9, 8]])
    np.testing.assert_array_equal(out[1], IMAGES[1])
    vertical = random_flip(IMAGES, horizontal=False, vertical=True, rng=FixedRng([[0.9, 0.1]]))
    np.testing.assert_array_equal(vertical[1], IMAGES[1][::-1])
    np.testing.assert_array_equal(vertical[0], IMAGES[0])


def test_shift_nearest_by_hand():
    out = shift_images(IMAGES, [1, 0], [0, -2])
    np.testing.assert_array_equal(out[0], [[0, 1, 2, 3], [0, 1, 2, 3], [4, 5, 6, 7]])
    np.testing.assert_array_equal(out[1], [[14, 15, 15, 15], [18, 19, 19, 19], [22, 23, 23, 23]])


def test_shift_constant_by_hand_with_channels():
    x = IMAGES[..., None].repeat(2, axis=3)
    out = shift_images(x, [-1, 0], [1, 0], fill_mode="constant", cval=-1)
    np.testing.assert_array_equal(out[0, ..., 1], [[-1, 4, 5, 6], [-1, 8, 9, 10], [-1, -1, -1, -1]])
    np.testing.assert_array_equal(out[1], x[1])


@pytest.mark.parametrize("dy, dx, got", [
    ([1, 2, 3], [0, 0], r"dy .* shape \(2,\) .* got shape \(3,\)"),
    ([1, 0], [0.5, 0], r"dx must be one whole-pixel shift"),
    ([[1], [0]], [0, 0], r"dy .* got shape \(2, 1\)"),
])
def test_shift_offsets_that_do_not_match_the_images_are_clear_errors(dy, dx, got):
    with pytest.raises(ValueError, match=got):
        shift_images(IMAGES, dy, dx)


def test_one_shift_for_every_image():
    np.testing.assert_array_equal(shift_images(IMAGES, 1, 0), shift_images(IMAGES, [1, 1], [0, 0]))


@pytest.mark.parametrize("value, size, allowed", [
    (3, 28, range(-2, 3)),  # Keras: an int r draws from {0..r-1} with a random sign
    (1, 28, [0]),
    (0.1, 28, range(-3, 4)),  # a fraction of the size, rounded
    (2.0, 28, range(-2, 3)),  # a float >= 1 is pixels
])
def test_shift_ranges_follow_keras(value, size, allowed):
    shifts = draw_shifts(np.random.default_rng(0), 4000, value, size)
    assert set(shifts.tolist()) == set(allowed)


def test_negative_shift_range_is_rejected():
    with pytest.raises(ValueError, match="non-negative"):
        draw_shifts(np.random.default_rng(0), 3, -1, 28)
    with pytest.raises(ValueError, match="non-negative"):
        ImageDataGenerator(width_shift_range=-0.5)


def test_shifts_stay_in_range_and_inputs_are_untouched(rng):
    x = rng.random((50, 10, 10))
    before = x.copy()
    out = random_shift(x, 0.2, 2, rng=rng)
    np.testing.assert_array_equal(x, before)
    assert out.shape == x.shape
    random_flip(x, rng=rng)
    np.testing.assert_array_equal(x, before)


def test_bad_options():
    with pytest.raises(ValueError, match="fill_mode"):
        ImageDataGenerator(fill_mode="wrap")
    with pytest.raises(ValueError, match="images"):
        random_flip(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="different lengths"):
        ImageDataGenerator().flow(np.zeros((3, 4, 4)), np.zeros(2))


def test_flow_is_reproducible_aligned_and_covers_each_epoch():
    x = np.arange(10)[:, None, None].repeat(4, 1).repeat(4, 2).astype(float)  # image i is all i
    y = np.arange(10)
    gen = ImageDataGenerator(horizontal_flip=True, height_shift_range=1)
    first = gen.flow(x, y, batch_size=4, seed=3)
    second = gen.flow(x, y, batch_size=4, seed=3)
    assert len(first) == 3
    seen = []
    for _ in range(3):
        (xa, ya), (xb, yb) = next(first), next(second)
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(xa[:, 0, 0], ya)  # images still carry their labels
        seen.extend(ya)
    assert sorted(seen) == list(range(10))  # one pass = every sample once
    assert len(next(first)[0]) == 4  # and it goes on forever


def test_fit_accepts_a_flow(rng):
    x = rng.random((30, 4, 4, 1)).astype(np.float32)
    y = rng.integers(0, 2, 30)
    model = Sequential([Flatten(input_shape=(4, 4, 1)), Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    flow = ImageDataGenerator(horizontal_flip=True).flow(x, y, batch_size=8, seed=0)
    drawn = []
    original_next = type(flow).__next__
    flow.__class__ = type("CountingFlow", (type(flow),),
                          {"__next__": lambda self: drawn.append(1) or original_next(self)})
    history = model.fit(flow, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    assert len(drawn) == 8  # steps_per_epoch defaults to ceil(30 / 8) = 4
