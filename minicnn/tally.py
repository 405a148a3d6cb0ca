"""A step's loss and metric counts, and their running totals over an epoch or an evaluation.

``loss_gradient`` computes a step's loss (its mean over the batch, the loss's gradient with
respect to the model's output) and the metrics' counts, and keeps them; ``logs`` gives the
running means. The backend hands ``fit`` its tally (the ``tally`` hook): this one, whose
numbers are host floats added step by step, for the CPU backends; CUDA's
(``backends/cuda/tally.py``) keeps them in device memory and reads them back in batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .snapshot import StepSnapshot, say_undone


@dataclass
class Step:
    size: int  # rows in the batch
    mark: int  # the caller's note at its start (fit: the optimizer's step count)
    loss_sum: float = 0.0  # the batch's summed loss
    counts: dict = field(default_factory=dict)  # the metrics' counts


def loss_and_counts(backend, loss, out, y, weights, metric_k: dict, logits: bool):
    """The mean loss of a batch, its gradient with respect to ``out`` and the metrics'
    counts ({name: rows right}; ``metric_k``: {name: k of its top-k}), by ``backend``'s
    kernels. ``out`` holds the logits (``logits``: the loss applies the last softmax or
    sigmoid) or the outputs."""
    if y.ndim == 1:  # sparse labels (class indices): this batch's one-hot targets
        y = backend.one_hot(y, out.shape[1])
    target = loss.targets(y)  # label smoothing's; the metrics count against y
    value, grad = (loss.fused if logits else loss)(out, target, weights)
    threshold = 0.0 if logits else 0.5  # logits or probabilities
    # Keras' rule: "accuracy" with binary cross-entropy over several outputs is binary
    # accuracy (each output a 0/1 label of its own), not the argmax's
    binary = loss.name == "binary_crossentropy" and y.shape[1] > 1
    counts = {name: backend.count_top_k(out, y, k) if k > 1
              else backend.count_binary_correct(out, y, threshold) if binary
              else backend.count_correct(out, y, threshold)
              for name, k in metric_k.items()}
    return value, grad, counts


class Tally:
    """Loss sum, metric counts and rows seen of the steps read so far (``read``)."""

    def __init__(self, backend, steps: int, metrics: list[str]):
        self.backend, self.metrics = backend, list(metrics)
        self.every_step = True  # fit: read after every step (a GPU's tally may wait)
        self._snapshot = StepSnapshot()
        self.restart()

    def restart(self) -> None:
        """Forget the steps (a new epoch)."""
        self._steps: list[Step] = []
        self._read = 0  # steps[:_read] are summed below
        self.loss_sum, self.seen = 0.0, 0
        self.counts = dict.fromkeys(self.metrics, 0)
        self.last_loss = math.nan  # mean loss of the last step read
        self.first_bad: int | None = None  # the first step whose loss is NaN or inf ...
        self.bad_update = False  # ... or whose update kept non-finite values (``update``)

    def begin(self, size: int, mark: int = 0) -> None:
        """Start a step of ``size`` rows."""
        self._steps.append(Step(size, mark))

    def loss_gradient(self, loss, out, y, weights, metric_k: dict, logits: bool):
        """The step's loss and metric counts (``loss_and_counts``), kept; -> d loss / d out."""
        value, grad, counts = loss_and_counts(self.backend, loss, out, y, weights, metric_k,
                                              logits)
        self.add(value * len(out), counts)
        return grad

    def add(self, loss_sum: float, counts: dict | None = None) -> None:
        """Add to the current step's summed loss (a weight penalty) and metric counts."""
        step = self._steps[-1]
        step.loss_sum += loss_sum
        for name, count in (counts or {}).items():
            step.counts[name] = step.counts.get(name, 0) + count

    def diverged(self) -> bool:
        """The current step's loss is NaN or inf: nothing of it may be applied."""
        return not math.isfinite(self._steps[-1].loss_sum)

    def update(self, optimizer, layers) -> None:
        """The optimizer's update of the current step, then the layers' state updates
        (``Layer.update_state``), all or nothing (``StepSnapshot``): an update that would
        make a value NaN or inf ends the step as a bad one (``bad_update``) and, like one
        that raises, is undone."""
        snapshot = self._snapshot.take(optimizer, layers)
        try:
            kept = optimizer.apply(layers)
            if not kept:
                for layer in layers:
                    layer.update_state()
        except BaseException as error:
            snapshot.restore()
            say_undone(error)
            raise
        if kept:
            snapshot.restore()
            if self.first_bad is None:
                self.first_bad, self.bad_update = len(self._steps) - 1, True

    def due(self) -> bool:
        """Whether fit should read (``read``) and report the steps so far now: here after
        every step, the numbers being on the host already."""
        return True

    @property
    def steps_read(self) -> int:
        return self._read

    def mark(self, step: int) -> int:
        return self._steps[step].mark

    def read(self, stop_at_bad: bool = True) -> None:
        """Sum the steps begun since the last read; with ``stop_at_bad``, only up to and
        including the first one that went bad."""
        for i in range(self._read, len(self._steps)):
            if stop_at_bad and self.first_bad is not None and self.first_bad < i:
                return
            self._count(self._steps[i].loss_sum, self._steps[i])
            if stop_at_bad and self.first_bad == i:
                return

    def _count(self, loss_sum: float, step: Step, counts: dict | None = None) -> None:
        """Add a step read back to the totals (its loss sum and counts, with ``counts``
        besides its own)."""
        self.loss_sum += loss_sum
        self.seen += step.size
        for name, count in (counts or {}).items():
            self.counts[name] = self.counts.get(name, 0) + count
        for name, count in step.counts.items():
            self.counts[name] = self.counts.get(name, 0) + count
        self.last_loss = loss_sum / step.size
        self._read += 1
        if not math.isfinite(loss_sum) and self.first_bad is None:
            self.first_bad = self._read - 1

    def forgive(self) -> None:
        """Carry on past a bad step (``fit(terminate_on_nan=False)``)."""
        self.first_bad, self.bad_update = None, False

    def logs(self, prefix: str = "") -> dict[str, float]:
        """{"loss": mean loss per row, "accuracy": ..., } of the steps read so far."""
        seen = max(self.seen, 1)
        return {prefix + "loss": self.loss_sum / seen,
                **{prefix + name: self.counts.get(name, 0) / seen for name in self.metrics}}
