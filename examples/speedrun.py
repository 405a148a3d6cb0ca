"""Fashion-MNIST to 93% test accuracy in under two minutes on two CPU cores: the speed-run.

    python examples/speedrun.py                  # all 60,000 training images, then the test set
    python examples/speedrun.py --seed 3
    python examples/speedrun.py --validate       # hold out the last 6,000: where choices are made
    python examples/speedrun.py --rung 1 --validate   # one rung of the ladder below

Prints ``test accuracy: 0.9xxx`` and the wall time of the whole command (imports, data,
training, scoring). The kernels must be compiled already (``./run`` does it when it
installs; otherwise the first run also compiles them and says so).

The recipe starts from ``train_cnn.py --model best`` (20 epochs at batch 64, Dropout,
BatchNorm with Keras' momentum 0.99, early stopping on a validation split; rung 0 here runs
its 20 epochs without it) and changes one thing per rung. Every choice was made on the
validation split (``--validate``: trains on the first 54,000 images, scores the last 6,000);
the test set is scored once, at the end of the last rung. The ladder (``--rung N``;
validation accuracy over seeds 0-2, rung 0 seed 0 only, and the whole command's wall time on
a 2-core machine, 2026-12-04, measured with ``benchmarks/speedrun_ladder.py``;
docs/performance.md, "The speed-run"; the rungs before three kernel changes, one of
which changed the dense layers' order of sums, so the final row was measured again after
the last):

    rung 0  the best recipe: 20 epochs, batch 64, Dropout, lr 1e-3   93.30%          451 s
    rung 1  5 epochs: the cosine schedule spans 5 epochs, not 20     92.07 +- 0.28   100 s
    rung 2  no Dropout: five epochs do not over-fit                  93.01 +- 0.25   103 s
    rung 3  batch 128 at twice the learning rate (2e-3)              93.17 +- 0.11    99 s
    rung 4  label smoothing 0.1: targets 0.91 / 0.01, not 1 / 0      93.28 +- 0.09   100 s
    then    all 60,000 images, scored on the test set (seeds 0-4)    93.30 +- 0.16    82 s
    2026-12-08, malloc keeping freed memory (backends/heap.py)       93.32 +- 0.21    66 s

The same recipe in PyTorch is benchmarks/speedrun_torch.py (timed beside this command by
``benchmarks/speedrun_ladder.py --torch``; the comparison is in docs/performance.md, "The
speed-run against its PyTorch twin").

What stayed as it was: the model (two Conv-BatchNorm-ReLU blocks with max-pooling,
Dense(128)-BatchNorm-ReLU, BatchNorm's momentum Keras' 0.99), Adam with a cosine decay to
zero, float32. Tried and left out (measured on the validation split): flipped copies at test
time (the shoes all face one way: -4 points), a third convolution (twice as slow, no
better), 6 epochs (no better), BatchNorm momentum 0.9 (no better).
"""

from __future__ import annotations

import time

START = time.perf_counter()  # before the imports: the wall time is the whole command's

import argparse  # noqa: E402
import math  # noqa: E402
from typing import NamedTuple  # noqa: E402

import minicnn  # noqa: E402
from minicnn import zoo  # noqa: E402
from minicnn.datasets import DATA_HELP, load_fashion_mnist, to_float_images  # noqa: E402
from minicnn.losses import SparseCategoricalCrossentropy  # noqa: E402
from minicnn.optimizers import Adam, CosineDecay  # noqa: E402

VALIDATION = 6000  # the last 10% of the training images, as train_cnn.py --model best holds out


class Recipe(NamedTuple):
    """What a rung of the ladder trains: epochs, batch size, Adam's peak learning rate (a
    cosine decays it to zero over the run), Dropout or not, label smoothing."""

    epochs: int
    batch_size: int
    learning_rate: float
    dropout: bool
    label_smoothing: float


LADDER = (
    Recipe(epochs=20, batch_size=64, learning_rate=1e-3, dropout=True, label_smoothing=0.0),
    Recipe(epochs=5, batch_size=64, learning_rate=1e-3, dropout=True, label_smoothing=0.0),
    Recipe(epochs=5, batch_size=64, learning_rate=1e-3, dropout=False, label_smoothing=0.0),
    Recipe(epochs=5, batch_size=128, learning_rate=2e-3, dropout=False, label_smoothing=0.0),
    Recipe(epochs=5, batch_size=128, learning_rate=2e-3, dropout=False, label_smoothing=0.1),
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the initial weights and the shuffling (default: %(default)s)")
    parser.add_argument("--validate", action="store_true",
                        help="train on the first 54,000 images and score the last 6,000 "
                        "instead of the test set (default: off)")
    parser.add_argument("--rung", type=int, choices=range(len(LADDER)), default=len(LADDER) - 1,
                        help="the ladder's recipe to train, 0 (the best recipe) to "
                        f"{len(LADDER) - 1} (the speed-run) (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="override the rung's epochs, for smoke runs (default: the rung's)")
    parser.add_argument("--limit", type=int, default=None,
                        help="train on the first N images only, for smoke runs (default: all)")
    parser.add_argument("--backend", choices=["numpy", "numba", "cython", "cuda"], default=None,
                        help="kernel backend (default: $MINICNN_BACKEND, else numba)")
    parser.add_argument("--data", default=None, help=DATA_HELP)
    parser.add_argument("--quiet", action="store_true",
                        help="print the result only, not a line per epoch (default: off)")
    args = parser.parse_args(argv)
    for option in ("epochs", "limit"):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            parser.error(f"--{option} must be a whole number >= 1, got {getattr(args, option)}")
    return args


def main(argv=None) -> float:
    args = parse_args(argv)
    if args.backend:
        minicnn.set_backend(args.backend)
    recipe = LADDER[args.rung]
    epochs = recipe.epochs if args.epochs is None else args.epochs
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist(args.data)
    x_train, x_test = to_float_images(x_train), to_float_images(x_test)
    scored = "test"
    if args.validate:  # the test set stays unseen: score the held-out training images
        cut = len(x_train) - min(VALIDATION, max(1, len(x_train) // 10))
        x_test, y_test = x_train[cut:], y_train[cut:]
        x_train, y_train = x_train[:cut], y_train[:cut]
        scored = "validation"
    if args.limit is not None:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]

    model = zoo.best(dropout=recipe.dropout)
    steps = epochs * math.ceil(len(x_train) / recipe.batch_size)
    model.compile(optimizer=Adam(CosineDecay(recipe.learning_rate, decay_steps=steps)),
                  loss=SparseCategoricalCrossentropy(label_smoothing=recipe.label_smoothing),
                  metrics=["accuracy"])
    print(f"rung {args.rung}: {recipe}; {len(x_train):,} training images, backend "
          f"{minicnn.get_backend().name}, seed {args.seed}")
    model.fit(x_train, y_train, batch_size=recipe.batch_size, epochs=epochs, seed=args.seed,
              verbose=0 if args.quiet else 2)
    _, accuracy = model.evaluate(x_test, y_test, batch_size=1000)
    print(f"{scored} accuracy: {accuracy:.4f}")
    print(f"wall time: {time.perf_counter() - START:.1f} s (imports, data, training, scoring)")
    return accuracy


if __name__ == "__main__":
    main()
