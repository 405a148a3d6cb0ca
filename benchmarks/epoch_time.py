"""Training throughput of the reference models per backend, and PyTorch, in one run.

    python benchmarks/epoch_time.py --models cnn_a cnn_b --backends numpy numba cython \
        --torch cpu --samples 4096
    python benchmarks/epoch_time.py --models cnn_b --batch-size 128 --backends cuda \
        --torch cuda --real     # a full 60,000-image epoch on Fashion-MNIST

Prints a Markdown table: samples/s, seconds per 60,000-image epoch, ratio to PyTorch.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import REFERENCE_BATCH, TorchTrainer, make_model, minicnn_epoch, random_data  # noqa: E402

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

    if args.real:
        from minicnn.datasets import load_fashion_mnist, to_float_images
        (x, y), _ = load_fashion_mnist()
        x = to_float_images(x)
    else:
        x, y = random_data(args.samples)
    rows = []
    for model_name in args.models:
        batch = args.batch_size or REFERENCE_BATCH[model_name]
        timings = {}
        if args.torch:
            trainer = TorchTrainer(model_name, args.torch, args.threads)
            trainer.epoch(x[:batch * 4], y[:batch * 4], batch)  # warm-up
            timings[f"pytorch-{args.torch}"] = min(trainer.epoch(x, y, batch)
                                                   for _ in range(args.epochs))
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
