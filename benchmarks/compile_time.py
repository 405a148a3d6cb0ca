"""JIT compile time as a user meets it: the first fit of the three-conv CNN in a fresh
process (import + two steps), with an empty Numba cache (cold), after ``./run``'s warm-up
(``python -m minicnn.warmup``, which the install runs once), and the warm-up itself.

    python benchmarks/compile_time.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

FIRST_FIT = """
import time
start = time.perf_counter()
import numpy as np, minicnn
minicnn.set_backend("numba")
from minicnn.zoo import cnn_b
model = cnn_b()
model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
x = np.random.default_rng(0).random((64, 28, 28, 1), dtype=np.float32)
model.fit(x, np.arange(64) % 10, batch_size=32, epochs=1, verbose=0)
print(f"{time.perf_counter() - start:.2f}")
"""


def _run(args: list[str], cache_dir: str) -> str:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                          check=True).stdout


def first_fit_seconds(cache_dir: str) -> float:
    return float(_run(["-c", FIRST_FIT], cache_dir).strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory() as cache:
        cold = first_fit_seconds(cache)
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        _run(["-m", "minicnn.warmup"], cache)
        warmup = time.perf_counter() - start
        after = first_fit_seconds(cache)
    print(f"import + first fit of cnn_b (2 steps), numba backend: empty cache {cold:.1f} s; "
          f"after the install's warm-up {after:.1f} s (the warm-up, every zoo model: "
          f"{warmup:.0f} s)")


if __name__ == "__main__":
    main()
