"""Training throughput of the reference models per backend, and PyTorch, in one run.

    python benchmarks/epoch_time.py --models cnn_a cnn_b --backends numpy numba cython \
        --torch cpu --samples 4096
    python benchmarks/epoch_time.py --models cnn_b --batch-size 128 --backends cuda \
        --torch cuda --real     # a full 60,000-image epoch on Fashion-MNIST

Prints a Markdown table: samples/s, seconds per 60,000-image epoch, ratio to PyTorch
(PyTorch runs in a separate process on the same data, so the engines' thread pools never meet).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    REFERENCE_BATCH,
    load_data,
    make_model,
    minicnn_epoch,
    torch_epoch_seconds,
)

import minicnn  # noqa: E402


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["cnn_a", "cnn_b"])
    parser.add_argument("--backends", nargs="+", default=minicnn.available_backends())
    parser.add_argument("--batch-size", type=int, default=None, help="default: the reference's")
    parser.add_argument("--samples", type=int, default=4096, help="images per timed epoch")
    parser.add_argument("--real", action="store_true", help="time full epochs of Fashion-MNIST")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs (best one counts)")
    parser.add_argument("--torch", choices=["cpu", "cuda"], default=None)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args(argv)

    x, y = load_data(args.real, args.samples)
    rows = []
    for model_name in args.models:
        batch = args.batch_size or REFERENCE_BATCH[model_name]
        timings = {}
        if args.torch:
            timings[f"pytorch-{args.torch}"] = torch_epoch_seconds(
                model_name, args.torch, batch, args.samples, args.real, args.epochs,
                args.threads)
        for backend in args.backends:
            with minicnn.use_backend(backend):
                model = make_model(model_name)
                start = time.perf_counter()
                minicnn_epoch(model, x[:batch * 2], y[:batch * 2], batch)  # compiles kernels
                warmup = time.perf_counter() - start
                timings[backend] = min(minicnn_epoch(model, x, y, batch)
                                       for _ in range(args.epochs))
                print(f"# {model_name} {backend}: first two steps {warmup:.2f} s", flush=True)
        reference = timings.get(f"pytorch-{args.torch}")
        for name, seconds in timings.items():
            row = {"model": model_name, "batch": batch, "backend": name,
                   "samples_per_s": len(x) / seconds, "epoch_s": 60000 * seconds / len(x),
                   "vs_pytorch": reference / seconds if reference else None}
            rows.append(row)
    print("| model | batch | backend | samples/s | s per 60k epoch | speed vs PyTorch |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['vs_pytorch']:.2f}x" if r["vs_pytorch"] else "-"
        print(f"| {r['model']} | {r['batch']} | {r['backend']} | {r['samples_per_s']:,.0f} | "
              f"{r['epoch_s']:.1f} | {ratio} |")
    return rows


if __name__ == "__main__":
    main()
