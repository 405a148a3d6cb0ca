"""Merge layers, called on a list of tensors: Add (a skip connection) and Concatenate."""

from __future__ import annotations

import math

from ..backends import get_backend
from .base import Layer


class Merge(Layer):
    """A layer of two or more inputs and no weights: ``Add()([a, b])``. ``input_shape`` is
    the list of its inputs' shapes; ``forward`` takes a list of arrays and ``backward``
    returns one gradient per input, in the same order."""

    merges = True

    def __init__(self, name: str | None = None):
        super().__init__(None, None, name)

    def build(self, input_shape, rng=None) -> None:
        shapes = [tuple(int(d) for d in shape) for shape in input_shape]
        self.output_shape = self.compute_output_shape(shapes)
        self.input_shape = shapes
        self.params, self.state, self.grads = {}, {}, {}
        self.built = True

    def count_params(self, input_shape=None, trainable: bool | None = None) -> int:
        return 0

    def get_config(self) -> dict:
        return {"name": self.name}  # its input shapes come from the graph


class Add(Merge):
    """y = a + b (+ c ...), inputs of one shape. The backward copies dy to every input: each
    branch gets the whole gradient (``add_backward``)."""

    def compute_output_shape(self, input_shape):
        shapes = [tuple(shape) for shape in input_shape]
        if any(shape != shapes[0] for shape in shapes):
            raise ValueError(f"layer {self.name!r} (Add) adds tensors of one shape, got "
                             f"{', '.join(str(s) for s in shapes)} (a projection, e.g. a 1x1 "
                             "Conv2D, makes a shortcut match its branch)")
        return shapes[0]

    def forward(self, xs, training=False):
        backend = get_backend()
        y = xs[0]
        for x in xs[1:]:
            y = backend.add_forward(y, x)
        self._inputs = len(xs)
        return y

    def backward(self, dy):
        backend = get_backend()
        grads = []
        for _ in range(self._inputs - 1):  # the forward's sums, last first
            dy, dx = backend.add_backward(dy)
            grads.append(dx)
        return [dy, *reversed(grads)]


class Concatenate(Merge):
    """Inputs side by side along ``axis`` (default -1: channels, or features), their other
    axes equal. The backward hands each input its slice of dy (``concatenate_backward``)."""

    def __init__(self, axis: int = -1, name: str | None = None):
        if isinstance(axis, bool) or not isinstance(axis, int) or axis == 0:
            raise ValueError(f"Concatenate axis must be an int other than 0 (the batch axis), "
                             f"e.g. -1 for channels; got {axis!r}")
        super().__init__(name)
        self.axis = axis

    def _sample_axis(self, rank: int) -> int:
        """The axis inside one sample (no batch axis) that the inputs join along."""
        axis = self.axis + rank + 1 if self.axis < 0 else self.axis
        if not 1 <= axis <= rank:
            raise ValueError(f"layer {self.name!r} (Concatenate): axis {self.axis} is not an "
                             f"axis of inputs with {rank} axes besides the batch's")
        return axis - 1

    def compute_output_shape(self, input_shape):
        shapes = [tuple(shape) for shape in input_shape]
        if any(len(shape) != len(shapes[0]) for shape in shapes):
            raise ValueError(f"layer {self.name!r} (Concatenate) joins tensors with as many "
                             f"axes, got {', '.join(str(s) for s in shapes)}")
        k = self._sample_axis(len(shapes[0]))
        if any(shape[:k] + shape[k + 1:] != shapes[0][:k] + shapes[0][k + 1:] for shape in shapes):
            raise ValueError(f"layer {self.name!r} (Concatenate, axis {self.axis}) joins "
                             "tensors whose other axes are equal, got "
                             f"{', '.join(str(s) for s in shapes)}")
        return (*shapes[0][:k], sum(shape[k] for shape in shapes), *shapes[0][k + 1:])

    def _as_blocks(self, x):
        """x as (rows, size along axis, inner): what the kernels join and split."""
        k = self._sample_axis(len(x.shape) - 1) + 1
        inner = math.prod(x.shape[k + 1:])
        return get_backend().reshape(x, (math.prod(x.shape[:k]), x.shape[k], inner))

    def forward(self, xs, training=False):
        backend = get_backend()
        y = self._as_blocks(xs[0])
        for x in xs[1:]:
            y = backend.concatenate_forward(y, self._as_blocks(x))
        self._shapes = [x.shape for x in xs]
        k = self._sample_axis(len(xs[0].shape) - 1) + 1
        return backend.reshape(y, (*xs[0].shape[:k], y.shape[1], *xs[0].shape[k + 1:]))

    def backward(self, dy):
        backend = get_backend()
        dy = self._as_blocks(dy)
        k = self._sample_axis(len(self._shapes[0]) - 1) + 1
        grads = []
        for shape in reversed(self._shapes[1:]):  # the forward's joins, last first
            dy, dx = backend.concatenate_backward(dy, dy.shape[1] - shape[k])
            grads.append(backend.reshape(dx, shape))
        return [backend.reshape(dy, self._shapes[0]), *reversed(grads)]

    def get_config(self) -> dict:
        return {**super().get_config(), "axis": self.axis}
