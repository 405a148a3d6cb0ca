"""Training throughput of the reference models per backend, and PyTorch, in one run.

    python benchmarks/epoch_time.py --models mlp cnn_a cnn_b --backends numpy numba cython \
        --torch cpu --samples 3072
    python benchmarks/epoch_time.py --models cnn_a cnn_b --batch-size 32 64 --torch cpu
    python benchmarks/epoch_time.py --models cnn_b --batch-size 128 --backends cuda \
        --torch cuda --real     # a full 60,000-image epoch on Fashion-MNIST
    python benchmarks/epoch_time.py --models nnclassifier --backends numpy numba cython

Prints a Markdown table: samples/s, seconds per 60,000-image epoch, the ratio to PyTorch
at its best, and the GFLOP/s of the model's matrix products with their fraction of the
machine's float32 GEMM peak, measured in the same run. PyTorch runs in separate processes
on the same data with the same thread count, once in its default NCHW layout and once
channels-last; the faster is the 1.00x reference. ``nnclassifier`` times the scratch MLP
(``NNClassifier``, 784-50-10, 25 mini-batches, float64) per epoch.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    REFERENCE_BATCH,
    gemm_peak_gflops,
    load_data,
    make_model,
    minicnn_epoch,
    minicnn_epochs,
    torch_epoch_seconds,
    training_flops_per_sample,
)

import minicnn  # noqa: E402
from minicnn.backends.threads import cpu_threads  # noqa: E402


def classic_epoch_seconds(x, y, epochs: int) -> float:
    """Best seconds per epoch of the scratch NNClassifier on flattened float64 images."""
    from minicnn.classic import NNClassifier

    flat = x.reshape(len(x), -1).astype("float64")
    best = float("inf")
    for _ in range(epochs):
        nn = NNClassifier(10, flat.shape[1], n_hidden_units=50, l2=0.5, epochs=1,
                          learning_rate=0.001, n_batches=25, random_seed=1)
        start = time.perf_counter()
        nn.fit(flat, y)
        best = min(best, time.perf_counter() - start)
    return best


def engines_in_turn(args, turn: int) -> list[str]:
    """The engines of one round ("torch" stands for PyTorch's layouts), in reverse order
    every other round so that a machine that slows down or speeds up favours none."""
    engines = (["torch"] if args.torch else []) + list(args.backends)
    return engines[::-1] if turn % 2 else engines


def one_round(model_name: str, batch: int, engines: list[str], args, x, y) -> dict[str, float]:
    """Best epoch seconds of each engine, timed one after another."""
    timings = {}
    for engine in engines:
        if engine == "torch":
            layouts = torch_epoch_seconds(model_name, args.torch, batch, args.samples,
                                          args.real, args.epochs, args.threads)
            for layout, seconds in layouts.items():
                timings[f"pytorch-{args.torch} ({layout})"] = seconds
            continue
        with minicnn.use_backend(engine):
            model = make_model(model_name)
            start = time.perf_counter()
            minicnn_epoch(model, x[:batch * 2], y[:batch * 2], batch)  # compiles
            warmup = time.perf_counter() - start
            timings[engine] = min(minicnn_epochs(model, x, y, batch, args.epochs))
            print(f"# {model_name} {engine}: first two steps {warmup:.2f} s", flush=True)
    return timings


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["cnn_a", "cnn_b"],
                        help="mlp, cnn_a, cnn_b, best, resnet and/or nnclassifier (default: "
                        "%(default)s)")
    parser.add_argument("--backends", nargs="+", default=minicnn.available_backends(),
                        help="minicnn backends to time (default: all available)")
    parser.add_argument("--batch-size", type=int, nargs="+", default=None,
                        help="images per step; several: each model at each (default: the "
                        "reference's per model)")
    parser.add_argument("--samples", type=int, default=4096,
                        help="images per timed epoch (default: %(default)s)")
    parser.add_argument("--real", action="store_true", help="time full epochs of Fashion-MNIST")
    parser.add_argument("--epochs", type=int, default=2,
                        help="timed epochs, the best one counts (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="time every engine this many times, alternating their order, "
                        "and keep each one's best: on a machine whose speed drifts, a fair "
                        "ratio (default: %(default)s)")
    parser.add_argument("--torch", choices=["cpu", "cuda"], default=None,
                        help="also time the PyTorch twin on this device (default: no)")
    parser.add_argument("--threads", type=int, default=cpu_threads(),
                        help="PyTorch's and the GEMM peak's threads (default: minicnn's, "
                        "%(default)s)")
    args = parser.parse_args(argv)

    x, y = load_data(args.real, args.samples)
    peak = gemm_peak_gflops(args.threads)
    print(f"# float32 GEMM peak: {peak:.0f} GFLOP/s (NumPy, 4096^2, {args.threads} threads)")
    rows = []
    for model_name in args.models:
        if model_name == "nnclassifier":
            for backend in args.backends:
                with minicnn.use_backend(backend):
                    seconds = classic_epoch_seconds(x, y, args.epochs)
                rows.append({"model": model_name, "batch": len(x) // 25, "backend": backend,
                             "seconds": seconds, "gflops": None, "reference": None})
            continue
        flops = training_flops_per_sample(make_model(model_name)) * len(x)
        for batch in args.batch_size or [REFERENCE_BATCH[model_name]]:
            timings = {}
            for turn in range(args.rounds):
                engines = engines_in_turn(args, turn)
                for name, seconds in one_round(model_name, batch, engines, args, x, y).items():
                    timings[name] = min(seconds, timings.get(name, float("inf")))
            peers = [t for k, t in timings.items() if k.startswith("pytorch")]
            reference = min(peers, default=None)
            for name, seconds in timings.items():
                rows.append({"model": model_name, "batch": batch, "backend": name,
                             "seconds": seconds, "gflops": flops / seconds / 1e9,
                             "reference": reference})
    print_table(rows, len(x), peak)
    return rows


def print_table(rows: list[dict], samples: int, peak: float) -> None:
    print("| model | batch | engine | samples/s | s per 60k epoch | vs PyTorch at its best "
          "| GFLOP/s | % of GEMM peak |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        r["samples_per_s"] = samples / r["seconds"]
        r["vs_pytorch"] = r["reference"] / r["seconds"] if r["reference"] else None
        ratio = f"{r['vs_pytorch']:.2f}x" if r["vs_pytorch"] else "-"
        gflops = f"{r['gflops']:.0f} | {r['gflops'] / peak:.0%}" if r["gflops"] else "- | -"
        print(f"| {r['model']} | {r['batch']} | {r['backend']} | {r['samples_per_s']:,.0f} | "
              f"{60000 * r['seconds'] / samples:.2f} | {ratio} | {gflops} |")


if __name__ == "__main__":
    main()
