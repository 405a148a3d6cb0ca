"""Keras-style progress output for fit / evaluate / predict."""

from __future__ import annotations

import sys
import time


def _fmt_time(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds >= 1 else f"{seconds * 1000:.0f}ms"


class Progbar:
    """``verbose=1``: a live bar per epoch; ``verbose=2``: one line per epoch; ``0``: silent.

        1875/1875 [==============================] - 12s 6ms/step - loss: 0.4964 - accuracy: 0.8230
    """

    def __init__(self, steps: int, verbose: int, stream=None, width: int = 30):
        self.steps, self.verbose, self.width = steps, verbose, width
        self.stream = stream or sys.stdout
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()

    def _metrics(self, values: dict[str, float]) -> str:
        return "".join(f" - {k}: {v:.4f}" for k, v in values.items())

    def update(self, step: int, values: dict[str, float]) -> None:
        """Redraw the bar after ``step`` steps (ten times a second at most; live on a terminal)."""
        now = time.perf_counter()
        if self.verbose != 1 or not self.live or now - self._last_draw < 0.1:
            return
        self._last_draw = now
        self.stream.write("\r" + self._line(step, now) + self._metrics(values))
        self.stream.flush()

    def _line(self, step: int, now: float) -> str:
        done = int(self.width * step / self.steps)
        bar = "=" * max(done - 1, 0) + (">" if done < self.width else "=") if done else ""
        elapsed = now - self.start
        line = f"{step}/{self.steps} [{bar:<{self.width}}]"
        if step < self.steps:
            eta = elapsed / max(step, 1) * (self.steps - step)
            line += f" - ETA: {_fmt_time(eta)}"
        else:
            line += f" - {_fmt_time(elapsed)} {elapsed / self.steps * 1000:.0f}ms/step"
        return line

    def finish(self, values: dict[str, float]) -> None:
        """End the epoch's line with the final metrics (validation ones included)."""
        elapsed = time.perf_counter() - self.start
        if self.verbose == 1:
            end = "\r" if self.live else ""
            line = self._line(self.steps, time.perf_counter())
            self.stream.write(end + line + self._metrics(values) + "\n")
        elif self.verbose == 2:
            self.stream.write(
                f"{self.steps}/{self.steps} - {_fmt_time(elapsed)} - "
                f"{elapsed / self.steps * 1000:.0f}ms/step{self._metrics(values)}\n"
            )
        self.stream.flush()
