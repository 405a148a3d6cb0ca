"""Keras-style progress output for fit / evaluate / predict."""

from __future__ import annotations

import sys
import threading
import time


def _fmt_time(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds >= 1 else f"{seconds * 1000:.0f}ms"


def _redraws_in_place(stream) -> bool:
    """A terminal, or a Jupyter notebook's output (which also honours a carriage return):
    the bar redraws its line there. Elsewhere (a log file, a pipe) one line per epoch."""
    if hasattr(stream, "isatty") and stream.isatty():
        return True
    return "ipykernel" in sys.modules and type(stream).__module__.startswith("ipykernel")


class Progbar:
    """``verbose=1``: a live bar per epoch; ``verbose=2``: one line per epoch; ``0``: silent.

        1875/1875 [==============================] - 12s 6ms/step - loss: 0.4964 - accuracy: 0.8230

    The ETA is measured from the first update on (``fit`` updates after the first step, or
    on a GPU at its first read of the loss): the first step may include compiling the
    kernels (JIT backends, first run), which says nothing about the rest.
    """

    def __init__(self, steps: int, verbose: int, stream=None, width: int = 30):
        self.steps, self.verbose, self.width = steps, verbose, width
        self.stream = stream or sys.stdout
        self.start = time.perf_counter()
        self._first_update: tuple[int, float] | None = None  # (step, time)
        self._last_draw = 0.0
        self._drawn = 0  # length of the line on screen, to blank what a shorter one leaves
        self.live = _redraws_in_place(self.stream)

    def _metrics(self, values: dict[str, float]) -> str:
        return "".join(f" - {k}: {v:.4f}" for k, v in values.items())

    def update(self, step: int, values: dict[str, float]) -> None:
        """Redraw the bar after ``step`` steps (ten times a second at most; live on a terminal)."""
        now = time.perf_counter()
        if self._first_update is None:
            self._first_update = (step, now)
        if self.verbose != 1 or not self.live or now - self._last_draw < 0.1:
            return
        self._last_draw = now
        self._redraw(self._line(step, now) + self._metrics(values))
        self.stream.flush()

    def _redraw(self, line: str, end: str = "") -> None:
        """Overwrite the current terminal line, padding with blanks past a shorter line."""
        self.stream.write("\r" + line.ljust(self._drawn) + end)
        self._drawn = 0 if end else len(line)

    def _line(self, step: int, now: float) -> str:
        done = int(self.width * step / self.steps)
        bar = "=" * max(done - 1, 0) + (">" if done < self.width else "=") if done else ""
        line = f"{step}/{self.steps} [{bar:<{self.width}}]"
        if step < self.steps:
            if self._first_update is not None and step > self._first_update[0]:
                first_step, first_time = self._first_update
                per_step = (now - first_time) / (step - first_step)
                line += f" - ETA: {_fmt_time(per_step * (self.steps - step))}"
        else:
            elapsed = now - self.start
            line += f" - {_fmt_time(elapsed)} {elapsed / self.steps * 1000:.0f}ms/step"
        return line

    def finish(self, values: dict[str, float], step: int | None = None) -> None:
        """End the epoch's line with the final metrics (validation ones included); ``step``:
        where an epoch that stopped early (a callback, a NaN loss) got to."""
        now = time.perf_counter()
        elapsed = now - self.start
        step = self.steps if step is None else step
        if self.verbose == 1:
            line = self._line(step, now) + self._metrics(values)
            if self.live:
                self._redraw(line, "\n")
            else:
                self.stream.write(line + "\n")
        elif self.verbose == 2:
            self.stream.write(
                f"{step}/{self.steps} - {_fmt_time(elapsed)} - "
                f"{elapsed / max(step, 1) * 1000:.0f}ms/step{self._metrics(values)}\n"
            )
        self.stream.flush()


class SlowStartNotice:
    """Prints ``message`` once if the ``with`` block runs longer than ``after`` seconds.

    Wraps a model's first training step: on a cold JIT cache it compiles the kernels,
    which can take many seconds, and the user should know the run is not stuck.
    ``message=None``: nothing to say, nothing started.
    """

    def __init__(self, message: str | None, after: float = 1.0, stream=None):
        self.message, self.after = message, after
        self.stream = stream or sys.stdout
        self._timer: threading.Timer | None = None

    def _say(self) -> None:
        self.stream.write(self.message + "\n")
        self.stream.flush()

    def __enter__(self) -> SlowStartNotice:
        if self.message is None:
            return self
        self._timer = threading.Timer(self.after, self._say)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._timer is not None:
            self._timer.cancel()
