"""The running loss and metric counts of an epoch (or an evaluation), step by step.

A step's numbers reach the tally in one of two ways. On the common path (softmax
cross-entropy with plain accuracy, no sample weights) the loss kernel writes the step's
loss sum and hit count into its row of ``rows``, a (steps, 2) float64 array in the
backend's memory, and sets ``halted`` ((1,) int32, same memory) to 1 when that loss is not
finite; while ``halted`` is set the optimizer changes nothing. An update that would have
made weights NaN or inf sets it to 2 (``KEPT``: those elements kept their values). So a GPU
step sends nothing back to the host: ``read`` brings the rows of every step since the last
read, and the flag, back (``fit`` reads once per progress update on a GPU, every step on
the CPU where it is free). Other losses, metrics and weight penalties hand host numbers to
``add``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .backends.contract import KEPT


@dataclass
class _Step:
    size: int  # rows in the batch
    mark: int  # the caller's note at its start (fit: the optimizer's step count)
    loss_sum: float = 0.0  # host part of the batch's summed loss
    counts: dict = field(default_factory=dict)  # host part of the metric counts
    in_rows: bool = False  # the loss kernel wrote this step's (loss sum, hits) into rows


class Tally:
    """Loss sum, metric counts and rows seen of the steps read so far (``read``)."""

    def __init__(self, backend, steps: int, metrics: list[str]):
        self.backend, self.metrics = backend, list(metrics)
        # the rows and the flag share one buffer, so that a read is one copy
        self._buffer = backend.to_device(np.zeros((steps + 1, 2)))
        self.rows = self._buffer[:steps]
        self.halted = self._buffer[steps].view(np.int32)[:1]
        self._slots: dict = {}  # step -> its row of ``rows`` (a device view: made once)
        self.restart()

    def restart(self) -> None:
        """Forget the steps (a new epoch); ``halted`` stays as it is."""
        self._steps: list[_Step] = []
        self._read = 0  # steps[:_read] are summed below
        self.loss_sum, self.seen = 0.0, 0
        self.counts = dict.fromkeys(self.metrics, 0)
        self.last_loss = math.nan  # mean loss of the last step read
        self.first_bad: int | None = None  # the first step whose loss is NaN or inf ...
        self.bad_update = False  # ... or whose update was not finite (``update_kept``)

    def begin(self, size: int, mark: int = 0) -> None:
        """Start a step of ``size`` rows (its index is the number of steps begun before)."""
        self._steps.append(_Step(size, mark))

    def slot(self):
        """The current step's row of ``rows``, for the loss kernel to write."""
        self._steps[-1].in_rows = True
        step = len(self._steps) - 1
        if step not in self._slots:
            self._slots[step] = self.rows[step]
        return self._slots[step]

    def add(self, loss_sum: float, counts: dict | None = None) -> None:
        """Add host numbers to the current step (its summed loss, metric counts)."""
        step = self._steps[-1]
        step.loss_sum += loss_sum
        for name, count in (counts or {}).items():
            step.counts[name] = step.counts.get(name, 0) + count

    def update_kept(self) -> None:
        """The current step's update kept elements whose new values were not finite."""
        self.halted[0] = KEPT  # (a host flag: device updates set theirs on the device)

    def known_bad(self) -> bool:
        """The current step's host loss is already NaN or inf (nothing must be applied)."""
        return not math.isfinite(self._steps[-1].loss_sum)

    @property
    def steps_read(self) -> int:
        return self._read

    def mark(self, step: int) -> int:
        return self._steps[step].mark

    def read(self, stop_at_bad: bool = True) -> None:
        """Sum the steps begun since the last read; with ``stop_at_bad``, only up to and
        including the first one whose loss is not finite (the steps after it, which
        changed no weights, are never counted)."""
        new = self._steps[self._read:]
        if (stop_at_bad and self.first_bad is not None) or not new:
            return
        buffer = self.backend.to_host(self._buffer)  # one copy for all of them
        rows = buffer[:-1]
        kept = self.first_bad is None and buffer[-1].view(np.int32)[0] == KEPT
        for i, step in enumerate(new, start=self._read):
            loss, counts = step.loss_sum, dict(step.counts)
            if step.in_rows:
                loss += float(rows[i, 0])
                for name in self.metrics:  # this path's metrics are all plain accuracy
                    counts[name] = counts.get(name, 0) + int(rows[i, 1])
            self.loss_sum += loss
            self.seen += step.size
            for name, count in counts.items():
                self.counts[name] = self.counts.get(name, 0) + count
            self.last_loss = loss / step.size
            self._read += 1
            if not math.isfinite(loss) and self.first_bad is None:
                self.first_bad = self._read - 1
                if stop_at_bad:
                    return
        if kept and self.first_bad is None:  # (on a GPU: by the last step read, at latest)
            self.first_bad, self.bad_update = self._read - 1, True

    def forgive(self) -> None:
        """Carry on past a bad step (``fit(terminate_on_nan=False)``): clear ``halted``."""
        self.first_bad, self.bad_update = None, False
        self.halted[0] = 0

    def logs(self, prefix: str = "") -> dict[str, float]:
        """{"loss": mean loss per row, "accuracy": ..., } of the steps read so far."""
        seen = max(self.seen, 1)
        return {prefix + "loss": self.loss_sum / seen,
                **{prefix + name: self.counts.get(name, 0) / seen for name in self.metrics}}
