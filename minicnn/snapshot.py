"""A training step's update, all or nothing: what it writes is copied first and put back if
it goes wrong.

An update goes wrong when it would make a weight or an optimizer slot NaN or inf (the
update kernels keep such elements' old values and count them) or when it raises part-way
(a learner's kernel, a MemoryError). Either way the step must leave no trace: ``take``
copies every trainable weight, its optimizer slots, every layer's state (BatchNorm's
moving statistics) and the optimizer's step count; ``restore`` puts them all back and
forgets slots the step created. The copies are kept from step to step, so a step copies
into buffers it already has. (The CUDA tally does the same on the device:
``backends/cuda/optimizers.py``.)
"""

from __future__ import annotations

import numpy as np

UNDONE = ("the step was undone: the weights, the optimizer's state and step count and "
          "BatchNorm's moving statistics are as they were before it")


def say_undone(error: BaseException) -> None:
    """Add to ``error``'s message that its step changed nothing (a note, Python >= 3.11)."""
    if hasattr(error, "add_note"):
        error.add_note(f"minicnn: {UNDONE}.")


class StepSnapshot:
    """Host copies of what an update may write, reused between steps."""

    def __init__(self):
        self._copies: dict[int, np.ndarray] = {}  # id(live array) -> its copy
        self._saved: list[tuple[np.ndarray, np.ndarray]] = []
        self._optimizer = None

    def take(self, optimizer, layers) -> StepSnapshot:
        """Copy the weights, slots and states of ``layers`` and ``optimizer``'s count."""
        self._optimizer, self._iterations = optimizer, optimizer.iterations
        self._slot_keys = set(optimizer.slots)
        live = [a for i, layer in enumerate(layers) for a in self._written_by(optimizer, i,
                                                                              layer)]
        copies = {}
        for a in live:
            copy = self._copies.get(id(a))
            if copy is None or copy.shape != a.shape or copy.dtype != a.dtype:
                copy = np.empty_like(a)
            np.copyto(copy, a)
            copies[id(a)] = copy
        self._copies = copies
        self._saved = [(a, copies[id(a)]) for a in live]
        return self

    @staticmethod
    def _written_by(optimizer, i: int, layer) -> list:
        """The arrays of layer ``i`` an update and ``update_state`` may write."""
        arrays = list(layer.state.values())
        if layer.trainable:
            for key, param in layer.params.items():
                arrays += [param, *optimizer.slots.get((i, key), {}).values()]
        return arrays

    def restore(self) -> None:
        """Put back what ``take`` copied; slots the step made are dropped."""
        for a, copy in self._saved:
            np.copyto(a, copy)
        optimizer = self._optimizer
        optimizer.iterations = self._iterations
        for key in set(optimizer.slots) - self._slot_keys:
            del optimizer.slots[key]
