"""CUDA's tally: a step's loss and metric counts left on the device, read back in batches.

On the common path (softmax cross-entropy with plain accuracy, no sample weights) the loss
kernel writes the step's loss sum and hit count into its row of ``rows``, a (steps, 2)
float64 device array, and sets the step flag ``halted`` ((1,) int32 on the device) to 1
when that loss is not finite; while it is set the update kernels change nothing. An update
that would have made weights NaN or inf sets it to ``KEPT`` + its stamp: those elements
kept their values, the updates after it skip theirs, and ``read`` undoes the step whole
from what its kernels saved (``StepBackups``). So a step sends nothing back to the host:
``read`` copies the rows of every step since the last read, and the flag, in one transfer
(``fit`` reads once per progress update, ``DeviceTally.READ_INTERVAL``). Other losses,
metrics and weight penalties are host numbers, as in ``minicnn.tally.Tally``.
"""

from __future__ import annotations

import time

import numpy as np

from ...snapshot import say_undone
from ...tally import Tally
from .losses import softmax_cross_entropy_totals, sparse_softmax_cross_entropy_totals
from .memory import to_device, to_host
from .optimizers import KEPT, StepBackups, guarded_update


class DeviceTally(Tally):
    """``Tally`` whose common-path numbers and NaN flag stay in device memory."""

    def __init__(self, backend, steps: int, metrics: list[str]):
        # the rows and the flag share one buffer, so that a read is one copy
        self._buffer = to_device(np.zeros((steps + 1, 2)))
        self.rows = self._buffer[:steps]
        self.halted = self._buffer[steps].view(np.int32)[:1]
        self._slots: dict = {}  # step -> its row of ``rows`` (a device view: made once)
        self._backups = StepBackups()
        super().__init__(backend, steps, metrics)

    READ_INTERVAL = 0.1  # seconds between fit's reads: a read makes the host wait for the GPU

    def restart(self) -> None:
        super().restart()
        self._in_rows: set = set()  # the steps whose loss kernel wrote their row
        self._last_read = time.perf_counter()

    def due(self) -> bool:
        """Once per READ_INTERVAL (every step if ``every_step``): the read waits for the GPU."""
        now = time.perf_counter()
        if self.every_step or now - self._last_read >= self.READ_INTERVAL:
            self._last_read = now
            return True
        return False

    def loss_gradient(self, loss, out, y, weights, metric_k: dict, logits: bool):
        """The loss kernel sums the loss and counts the hits (argmax, which smoothing keeps)
        into the step's row, on the device, for softmax cross-entropy with plain accuracy."""
        if not (logits and loss.fuses == "softmax" and set(metric_k.values()) <= {1}
                and weights is None):
            return super().loss_gradient(loss, out, y, weights, metric_k, logits)
        step = len(self._steps) - 1
        if step not in self._slots:
            self._slots[step] = self.rows[step]
        self._in_rows.add(step)
        if y.ndim == 1:  # class indices, read by the loss kernel itself
            return sparse_softmax_cross_entropy_totals(out, y, loss.label_smoothing,
                                                       self._slots[step], self.halted)
        return softmax_cross_entropy_totals(out, loss.targets(y), self._slots[step], self.halted)

    def update(self, optimizer, layers) -> None:
        """The update kernels read ``halted`` themselves, save what they replace and set it
        to KEPT + the step's stamp (read later, then undone); the layers' state updates
        (``moving_average``) skip while it is set. One that raises is undone at once."""
        iterations, slot_keys = optimizer.iterations, set(optimizer.slots)
        self._backups.begin(iterations + 1)  # the stamp: the count after this step
        with guarded_update(self.halted, self._backups):
            try:
                optimizer.apply(layers)
                for layer in layers:
                    layer.update_state()
            except BaseException as error:
                flag = int(to_host(self.halted)[0])  # waits for the kernels launched
                if flag in (0, KEPT + self._backups.stamp):  # they ran: undo them
                    self._backups.undo(self._backups.stamp)
                    self.halted[0] = 0
                optimizer.iterations = iterations
                for key in set(optimizer.slots) - slot_keys:
                    del optimizer.slots[key]
                say_undone(error)
                raise

    def read(self, stop_at_bad: bool = True) -> None:
        if (stop_at_bad and self.first_bad is not None) or self._read == len(self._steps):
            return
        buffer = to_host(self._buffer)  # one copy for every step since the last read
        rows = buffer[:-1]
        flag = int(buffer[-1].view(np.int32)[0])
        bad_update = None
        if self.first_bad is None and flag >= KEPT:  # step s's update went bad: undo it
            self._backups.undo(flag - KEPT)
            bad_update = next(i for i in range(self._read, len(self._steps))
                              if self._steps[i].mark == flag - KEPT - 1)  # (its count)
        self._backups.forget()
        for i in range(self._read, len(self._steps)):
            step = self._steps[i]
            loss_sum, counts = step.loss_sum, {}
            if i in self._in_rows:
                loss_sum += float(rows[i, 0])
                counts = dict.fromkeys(self.metrics, int(rows[i, 1]))  # all plain accuracy
            self._count(loss_sum, step, counts)
            if i == bad_update and self.first_bad is None:
                self.first_bad, self.bad_update = i, True
            if stop_at_bad and self.first_bad is not None:
                return

    def forgive(self) -> None:
        """Carry on past a bad step: clear ``halted`` too."""
        super().forgive()
        self.halted[0] = 0
