"""Input (the shape a model starts from) and Dropout."""

from __future__ import annotations

import numpy as np

from ..backends import get_backend
from .base import Layer, SymbolicTensor, check_shape


class Input(SymbolicTensor):
    """The symbolic tensor a graph starts from: ``x = Input((28, 28, 1))``, then
    ``y = Conv2D(32, 3)(x)`` and ``Model(x, y)``; or first in
    ``Sequential([Input((28, 28, 1)), Conv2D(...), ...])``, where it gives its shape to the
    first layer as that layer's ``input_shape``.

    Not a layer of its own: ``model.layers`` does not list it (``summary`` shows it as the
    graph's first row).
    """

    def __init__(self, shape, name: str | None = None):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Input name must be a string, got {type(name).__name__}")
        super().__init__(check_shape(shape, "Input shape"))
        self.name = name or "input_layer"  # Keras' name for it

    def __repr__(self) -> str:
        return f"Input(shape={self.shape}, name={self.name!r})"


class Dropout(Layer):
    """While training, zero each input with probability ``rate`` and scale the rest by
    1 / (1 - rate) (so the expected output equals the input); at inference, the identity.

    Each step's mask is the backend's ``dropout`` kernel's, drawn per element from a key
    that ``self.rng`` gives (``fit(seed=...)`` seeds it): same seed, same masks, on every
    backend.
    """

    uses_rng = True

    def __init__(self, rate: float, seed: int | None = None, input_shape=None, name=None):
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating)) \
                or not 0.0 <= rate < 1.0:
            raise ValueError(f"Dropout rate must be a number in [0, 1), got {rate!r}")
        super().__init__(None, input_shape, name)
        self.rate = float(rate)
        self.seed = seed
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self._key = None

    def forward(self, x, training=False):
        if not training or self.rate == 0.0:
            self._key = None
            return x
        # the mask is the backend's, drawn from this key per element: never stored, the
        # backward draws it again (reference.elementwise.dropout)
        self._key = int(self.rng.integers(2**63))
        return get_backend().dropout(x, self.rate, self._key)

    def backward(self, dy):
        return dy if self._key is None else get_backend().dropout(dy, self.rate, self._key)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
