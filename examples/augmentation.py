"""Does flip/shift augmentation help a CNN trained on only 500 Fashion-MNIST images?

    python examples/augmentation.py --seeds 3
    python examples/augmentation.py --epochs-plain 1 --epochs-augmented 1 --seeds 1 --limit 500

For each seed: a CNN trained 20 epochs on the plain 500 images (reference 79.24%), then a
fresh one trained 50 epochs on ImageDataGenerator(height_shift_range=3,
horizontal_flip=True) batches (reference 81.09%). Prints mean and spread over seeds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import minicnn
from minicnn import plotting
from minicnn.augment import ImageDataGenerator
from minicnn.datasets import DATA_HELP, load_fashion_mnist, to_float_images
from minicnn.zoo import small_data_cnn


def train(x, y, x_test, y_test, epochs: int, seed: int, augment: bool):
    model = small_data_cnn()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    if augment:
        flow = ImageDataGenerator(height_shift_range=3, horizontal_flip=True).flow(
            x, y, batch_size=40, seed=seed)
        history = model.fit(flow, epochs=epochs, seed=seed, verbose=0)
    else:
        history = model.fit(x, y, batch_size=40, epochs=epochs, seed=seed, verbose=0)
    return model.evaluate(x_test, y_test, batch_size=500)[1], history


def main(argv=None) -> dict[str, list[float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=500,
                        help="train on the first N training images (default: %(default)s)")
    parser.add_argument("--epochs-plain", type=int, default=20,
                        help="epochs of the model trained without augmentation"
                        " (default: %(default)s)")
    parser.add_argument("--epochs-augmented", type=int, default=50,
                        help="epochs of the model trained on flipped and shifted batches"
                        " (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=5, help="how many seeds to average over"
                        " (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=None,
                        help="test on the first N test images (default: all 10,000)")
    parser.add_argument("--backend", choices=["numpy", "numba", "cython", "cuda"], default=None,
                        help="kernel backend (default: $MINICNN_BACKEND, else numba)")
    parser.add_argument("--data", default=None,
                        help=DATA_HELP)
    parser.add_argument("--out", default="runs", help="folder for the augmented-samples figure"
                        " (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.backend:
        minicnn.set_backend(args.backend)

    (x_train, y_train), (x_test, y_test) = load_fashion_mnist(args.data)
    x_small, y_small = to_float_images(x_train[:args.samples]), y_train[:args.samples]
    x_test, y_test = to_float_images(x_test[:args.limit]), y_test[:args.limit]
    results: dict[str, list[float]] = {"plain": [], "augmented": []}
    for seed in range(args.seeds):
        for name, epochs in (("plain", args.epochs_plain), ("augmented", args.epochs_augmented)):
            start = time.perf_counter()
            accuracy, history = train(x_small, y_small, x_test, y_test, epochs, seed,
                                      augment=name == "augmented")
            results[name].append(accuracy)
            print(f"seed {seed} {name:>9}: test accuracy {accuracy:.2%} "
                  f"({(time.perf_counter() - start) / epochs:.2f} s/epoch)")
    for name, values in results.items():
        print(f"{name:>9}: {np.mean(values):.2%} ± {np.std(values):.2%} over {args.seeds} seeds")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gen = ImageDataGenerator(height_shift_range=3, horizontal_flip=True)
    batch = next(gen.flow(x_small, y_small, batch_size=16, seed=0))
    plotting.plot_samples(*batch, n=16, path=out / "augmented_samples.png")
    return results


if __name__ == "__main__":
    main()
