"""JIT compile time as a user meets it: the first fit step of the three-conv CNN in a fresh
process, with an empty Numba cache (cold) and again with the cache it left (warm).

    python benchmarks/compile_time.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

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


def first_fit_seconds(cache_dir: str) -> float:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    out = subprocess.run([sys.executable, "-c", FIRST_FIT], env=env, capture_output=True,
                         text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory() as cache:
        cold = first_fit_seconds(cache)
        warm = first_fit_seconds(cache)
    print(f"import + first fit of cnn_b (2 steps), numba backend: cold cache {cold:.1f} s, "
          f"warm cache {warm:.1f} s")


if __name__ == "__main__":
    main()
