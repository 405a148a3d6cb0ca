"""Compile the Numba kernels of the zoo's models before their first run.

Numba compiles a kernel the first time it is called and keeps the machine code in its
on-disk cache; on an empty cache a model's first step waits for every kernel it uses.
``./run`` calls this once, right after it installs minicnn, so that the README's commands
start training at once. Each model trains two small batches, then predicts, in float32 on
the Numba backend; the models are shared out over worker processes, one per core.

    python -m minicnn.warmup              # every zoo model
    python -m minicnn.warmup cnn_b best   # some of them
    python -m minicnn.warmup --for examples/train_cnn.py --model best   # what it needs

``--for COMMAND`` (``./run`` passes the command it is about to run) compiles only the
models that command trains (``MODELS_OF_EXAMPLES``), so a first run of the main job waits
for its own model's kernels only; the others compile on their first use. Any other command
(the tests, a script of one's own) gets every model.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

import minicnn
from minicnn import zoo
from minicnn.backends.numba.jit import JIT
from minicnn.backends.threads import cpu_threads

# Heaviest first, so that the workers finish together (Winograd: cnn_b and best).
ORDER = ("cnn_b", "best", "cnn_a", "small_data_cnn", "mlp", "resnet")


def warm(name: str) -> float:
    """Train zoo model ``name`` for two batches and predict with it; -> seconds taken."""
    start = time.perf_counter()
    with minicnn.use_backend("numba"):
        model = zoo.MODELS[name]()
        model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
        rng = np.random.default_rng(0)
        x = rng.random((40, *model.input_shape), dtype=np.float32)
        y = np.arange(40) % model.output_shape[0]
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, seed=0, validation_data=(x, y))
        model.predict(x[:3])
    return time.perf_counter() - start


# The zoo models each example trains (train_cnn.py: its --model, cnn_b by default).
MODELS_OF_EXAMPLES = {"train_cnn.py": ["cnn_b"], "speedrun.py": ["best"],
                      "augmentation.py": ["small_data_cnn"], "inspect_model.py": ["cnn_b"],
                      "train_mlp.py": [], "xor.py": []}


def models_for(command: list[str]) -> list[str]:
    """The zoo models ``command`` (python's arguments) will train: an example's, or all."""
    script = os.path.basename(command[0]) if command else ""
    if script not in MODELS_OF_EXAMPLES:
        return list(ORDER)
    for i, arg in enumerate(command):
        chosen = arg.split("=", 1)[1] if arg.startswith("--model=") else \
            command[i + 1] if arg == "--model" and i + 1 < len(command) else None
        if chosen in ORDER:
            return [chosen]
    return MODELS_OF_EXAMPLES[script]


def main(argv: list[str] | None = None) -> None:
    argv = list(argv if argv is not None else sys.argv[1:])
    names = models_for(argv[1:]) if argv[:1] == ["--for"] else argv or list(ORDER)
    if not names:
        return
    unknown = sorted(set(names) - set(ORDER))
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; the zoo has {list(ORDER)}")
    if not JIT["cache"]:
        print("minicnn: numba cannot cache kernels here, so there is nothing to warm up")
        return
    print(f"minicnn: compiling the numba kernels of {', '.join(names)} (once: they are "
          "cached on disk; a few minutes on 2 cores) ...", flush=True)
    start = time.perf_counter()
    workers = max(1, min(cpu_threads(), len(names)))
    # spawned, not forked: a fork of a process whose Numba thread pool runs is unsafe
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for name, seconds in zip(names, pool.map(warm, names)):
            print(f"minicnn:   {name}: {seconds:.0f} s", flush=True)
    print(f"minicnn: kernels compiled and cached in {time.perf_counter() - start:.0f} s",
          flush=True)


if __name__ == "__main__":
    main()
