"""Fingerprints of the weights the zoo's models train to: run it before and after a change
that must not change results, and compare the lines (same seed, same backend -> the same
bytes). One epoch of 256 random images per model, seed 0.

    ./run benchmarks/same_weights.py [--backends numba cython] [--models cnn_b mlp]
"""

from __future__ import annotations

import argparse
import hashlib

import numpy as np

import minicnn
from minicnn import zoo


def fingerprint(backend: str, model_name: str) -> str:
    """MD5 of every weight's bytes after one seeded epoch of ``model_name`` on ``backend``."""
    rng = np.random.default_rng(0)
    x, y = rng.random((256, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 256)
    with minicnn.use_backend(backend):
        model = getattr(zoo, model_name)()
        model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, seed=0)
        return hashlib.md5(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=minicnn.available_backends())
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn_a", "cnn_b", "best"])
    args = parser.parse_args()
    for backend in args.backends:
        for name in args.models:
            print(backend, name, fingerprint(backend, name))


if __name__ == "__main__":
    main()
