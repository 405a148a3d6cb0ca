"""Batches of a data set for fit / evaluate, in the active backend's memory.

On a device backend (CUDA) the arrays are uploaded once, when the feed is made (once per
``fit``), and an epoch's shuffle is one gather on the device (``take_rows`` into a second
copy): each batch is then a slice of device memory (a view made once), and a step copies
nothing.
On the host a batch is gathered from the arrays at each step instead, which keeps a second
copy of the data set out of memory.
"""

from __future__ import annotations

import math

import numpy as np


class ArrayFeed:
    """(x, y) and optional per-row host ``weights`` (N,), served ``batch_size`` rows at a time."""

    def __init__(self, backend, x: np.ndarray, y: np.ndarray, weights: np.ndarray | None,
                 batch_size: int):
        self.backend, self.weights, self.batch_size = backend, weights, batch_size
        self.size = len(x)
        self.on_device = backend.on_device
        self.arrays = tuple(backend.to_device(a) for a in (x, y)) if self.on_device else (x, y)
        self.order: np.ndarray | None = None
        self._shuffled = None  # device copies in this epoch's order (made once, on demand)
        self._batches: dict = {}  # (shuffled?, step) -> the batch's device views, made once

    def __len__(self) -> int:
        """Batches per epoch (the last one may be short)."""
        return math.ceil(self.size / self.batch_size)

    def shuffle(self, order: np.ndarray | None) -> None:
        """Serve this epoch's rows in ``order`` (a permutation of range(size)), or as stored."""
        self.order = order
        if self.on_device and order is not None:
            if self._shuffled is None:
                self._shuffled = tuple(self.backend.zeros_like(a) for a in self.arrays)
            with self.backend.step_buffers(self, "order", self.size):  # one buffer, reused
                rows = self.backend.to_device(order)
                for source, target in zip(self.arrays, self._shuffled):
                    self.backend.take_rows(source, rows, target)

    def batch(self, step: int) -> tuple:
        """(x, y, weights or None) of batch ``step`` of this epoch."""
        rows = slice(step * self.batch_size, (step + 1) * self.batch_size)
        picked = rows if self.order is None else self.order[rows]
        weights = None if self.weights is None else self.weights[picked]
        if self.on_device:
            key = (self.order is not None, step)
            if key not in self._batches:
                source = self._shuffled if key[0] else self.arrays
                self._batches[key] = source[0][rows], source[1][rows]
            return (*self._batches[key], weights)
        return self.arrays[0][picked], self.arrays[1][picked], weights
