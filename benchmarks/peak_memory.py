"""Peak resident memory of a training run: minicnn (each CPU backend) against PyTorch CPU.

    python benchmarks/peak_memory.py --model cnn_b --samples 60000

Each run is a fresh process training one epoch on random data of Fashion-MNIST's size;
the figure is the process's peak RSS (ru_maxrss), data included.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

RUN = """
import resource, sys
sys.path.insert(0, {bench!r})
from common import REFERENCE_BATCH, TorchTrainer, make_model, minicnn_epoch, random_data
import minicnn
from minicnn.backends.threads import cpu_threads
x, y = random_data({samples})
batch = REFERENCE_BATCH[{model!r}]
if {backend!r} == "pytorch":
    TorchTrainer({model!r}, "cpu", cpu_threads()).epoch(x, y, batch)
else:
    minicnn.set_backend({backend!r})
    minicnn_epoch(make_model({model!r}), x, y, batch)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def peak_mib(model: str, backend: str, samples: int) -> float:
    code = RUN.format(bench=os.path.dirname(os.path.abspath(__file__)), model=model,
                      backend=backend, samples=samples)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="cnn_b")
    parser.add_argument("--samples", type=int, default=60000)
    parser.add_argument("--backends", nargs="+", default=["numba", "cython", "numpy", "pytorch"])
    args = parser.parse_args(argv)
    print("| model | backend | peak RSS (MiB) |")
    print("|---|---|---|")
    for backend in args.backends:
        print(f"| {args.model} | {backend} | {peak_mib(args.model, backend, args.samples):.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
