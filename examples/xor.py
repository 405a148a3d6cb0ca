"""A 2-3-1 sigmoid network learns XOR, the classic problem no single layer can solve.

    python examples/xor.py --epochs 2000
"""

from __future__ import annotations

import argparse

import numpy as np

from minicnn import Sequential
from minicnn.datasets import load_xor
from minicnn.layers import Dense
from minicnn.optimizers import SGD


def main(argv=None) -> np.ndarray:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2000, help="passes over the four rows"
                        " (default: %(default)s)")
    parser.add_argument("--learning-rate", type=float, default=2.0,
                        help="SGD learning rate (momentum 0.9) (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=3, help="seed of the initial weights"
                        " (default: %(default)s)")
    args = parser.parse_args(argv)

    x, y = load_xor()
    model = Sequential([Dense(3, activation="sigmoid", input_shape=(2,)),
                        Dense(1, activation="sigmoid")])
    model.compile(SGD(args.learning_rate, momentum=0.9), "binary_crossentropy", ["accuracy"])
    history = model.fit(x, y, batch_size=4, epochs=args.epochs, verbose=0, seed=args.seed)
    losses = history.history["loss"]
    for epoch in np.unique(np.geomspace(1, args.epochs, 8).astype(int)):
        print(f"epoch {epoch:5d}: error {losses[epoch - 1]:.4f}")
    predictions = model.predict(x)[:, 0]
    for (a, b), p, target in zip(x.astype(int), predictions, y):
        print(f"{a} xor {b} = {target}: predicted {p:.3f}")
    return predictions


if __name__ == "__main__":
    main()
