"""Random flips and shifts of image batches, and an ImageDataGenerator-style flow (NumPy only).

Images are channels-last, (N, H, W) or (N, H, W, C). Every function returns a new array
and never modifies its input.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .validation import check_positive_int, check_seed


def _images(x) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim not in (3, 4):
        raise ValueError(f"expected images (N, H, W) or (N, H, W, C), got shape {x.shape}")
    return x


def random_flip(x, horizontal: bool = True, vertical: bool = False, p: float = 0.5,
                rng: np.random.Generator | None = None) -> np.ndarray:
    """Mirror each image left-right (and/or top-bottom) with probability ``p``, independently."""
    x = _images(x)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
    rng = rng if rng is not None else np.random.default_rng()
    out = x.copy()
    for axis, enabled in ((2, horizontal), (1, vertical)):
        if enabled:
            chosen = rng.random(len(x)) < p
            out[chosen] = np.flip(out[chosen], axis=axis)
    return out


def _shift_index(size: int, shifts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Source index of each output pixel for per-image shifts, and whether it lies inside."""
    source = np.arange(size)[None, :] - shifts[:, None]  # out[i] = in[i - shift]
    inside = (source >= 0) & (source < size)
    return np.clip(source, 0, size - 1), inside


def _whole_shifts(shifts, n: int, name: str) -> np.ndarray:
    """One whole-pixel shift per image (N,), from such an array or one number for all."""
    shifts = np.asarray(shifts)
    if shifts.shape not in ((), (n,)) or not (
            np.issubdtype(shifts.dtype, np.integer)
            or (np.issubdtype(shifts.dtype, np.floating) and np.all(shifts == np.round(shifts)))):
        raise ValueError(f"{name} must be one whole-pixel shift per image, shape ({n},) of "
                         f"integers (or one integer for all), got shape {shifts.shape} of "
                         f"{shifts.dtype}")
    return np.broadcast_to(shifts.astype(np.int64), (n,))


def shift_images(x, dy, dx, fill_mode: str = "nearest", cval: float = 0) -> np.ndarray:
    """Move image k down by dy[k] and right by dx[k] whole pixels (negative: up / left).

    Pixels shifted in repeat the edge (``"nearest"``) or take ``cval`` (``"constant"``).
    One fancy-indexing gather for the whole batch, no loop over images.
    """
    x = _images(x)
    if fill_mode not in ("nearest", "constant"):
        raise ValueError(f"fill_mode must be 'nearest' or 'constant', got {fill_mode!r}")
    n, h, w = x.shape[:3]
    rows, rows_in = _shift_index(h, _whole_shifts(dy, n, "dy"))
    cols, cols_in = _shift_index(w, _whole_shifts(dx, n, "dx"))
    out = x[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    if fill_mode == "constant":
        out[~(rows_in[:, :, None] & cols_in[:, None, :])] = cval
    return out


def check_shift_range(value) -> int | float:
    """A shift range as Python's int or float (NumPy scalars welcome): finite and >= 0."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or value < 0:
        raise ValueError(f"a shift range must be a finite, non-negative number (pixels, or a "
                         f"fraction of the image below 1), got {value!r}")
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def draw_shifts(rng: np.random.Generator, n: int, value: float, size: int) -> np.ndarray:
    """n random whole-pixel shifts with Keras' ImageDataGenerator conventions.

    An int r draws a magnitude from {0, ..., r - 1} and a random sign (so 3 gives -2..2,
    exactly as Keras does); a float is a uniform range in pixels, or a fraction of
    ``size`` when below 1, rounded to whole pixels.
    """
    value = check_shift_range(value)
    if value == 0:
        return np.zeros(n, dtype=np.int64)
    if isinstance(value, int):
        return rng.integers(0, value, size=n) * rng.choice([-1, 1], size=n)
    limit = value * size if value < 1 else value
    return np.rint(rng.uniform(-limit, limit, size=n)).astype(np.int64)


def random_shift(x, height_range: float = 0, width_range: float = 0,
                 fill_mode: str = "nearest", cval: float = 0,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """Shift each image by its own random offset (``draw_shifts``' conventions)."""
    x = _images(x)
    rng = rng if rng is not None else np.random.default_rng()
    n, h, w = x.shape[:3]
    dy, dx = draw_shifts(rng, n, height_range, h), draw_shifts(rng, n, width_range, w)
    return shift_images(x, dy, dx, fill_mode, cval)


class ImageDataGenerator:
    """Keras-style random augmentation: ``gen.flow(x, y, batch_size=32, seed=42)``."""

    def __init__(self, horizontal_flip: bool = False, vertical_flip: bool = False,
                 height_shift_range: float = 0, width_shift_range: float = 0,
                 fill_mode: str = "nearest", cval: float = 0.0):
        if fill_mode not in ("nearest", "constant"):
            raise ValueError(f"fill_mode must be 'nearest' or 'constant', got {fill_mode!r}")
        self.horizontal_flip, self.vertical_flip = horizontal_flip, vertical_flip
        self.height_shift_range = check_shift_range(height_shift_range)
        self.width_shift_range = check_shift_range(width_shift_range)
        if isinstance(cval, bool) or not isinstance(cval, (int, float, np.integer, np.floating)) \
                or not np.isfinite(cval):
            raise ValueError(f"cval (the value shifted-in pixels take) must be a finite "
                             f"number, got {cval!r}")
        self.fill_mode, self.cval = fill_mode, float(cval)

    def augment(self, x, rng: np.random.Generator) -> np.ndarray:
        """One random augmentation of a batch (a new array)."""
        if self.horizontal_flip or self.vertical_flip:
            x = random_flip(x, self.horizontal_flip, self.vertical_flip, rng=rng)
        if self.height_shift_range or self.width_shift_range:
            x = random_shift(x, self.height_shift_range, self.width_shift_range,
                             self.fill_mode, self.cval, rng=rng)
        return x

    def flow(self, x, y, batch_size: int = 32, shuffle: bool = True,
             seed: int | None = None) -> ArrayFlow:
        """An endless iterator of augmented ``(x_batch, y_batch)``."""
        return ArrayFlow(self, x, y, batch_size, shuffle, seed)


class ArrayFlow:
    """Yields augmented batches forever, reshuffling each pass; ``len()`` is batches per pass."""

    def __init__(self, generator: ImageDataGenerator, x, y, batch_size: int = 32,
                 shuffle: bool = True, seed: int | None = None):
        self.x, self.y = _images(x), np.asarray(y)
        if len(self.x) != len(self.y):
            raise ValueError(f"x and y have different lengths: {len(self.x)} and {len(self.y)}")
        self.generator = generator
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.n, self.shuffle = len(self.x), shuffle
        self.rng = np.random.default_rng(check_seed(seed))
        self._order, self._position = None, self.n

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self) -> ArrayFlow:
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        if self._position >= self.n:  # a new pass over the data
            self._order = self.rng.permutation(self.n) if self.shuffle else np.arange(self.n)
            self._position = 0
        idx = self._order[self._position:self._position + self.batch_size]
        self._position += self.batch_size
        return self.generator.augment(self.x[idx], self.rng), self.y[idx]
