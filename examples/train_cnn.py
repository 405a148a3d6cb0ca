"""Train a Keras-style model on real Fashion-MNIST: the main job.

    python examples/train_cnn.py                      # the three-conv CNN, 10 epochs, batch 32
    python examples/train_cnn.py --model cnn_a --batch-size 64
    python examples/train_cnn.py --epochs 1 --limit 2000 --backend numpy
    python examples/train_cnn.py --model best        # past the seeds (several minutes)
    python examples/train_cnn.py --model resnet      # residual blocks, on shifted images

Prints Keras-style progress and the test accuracy; saves the model (.npz) and figures
(history, sample predictions, conv filters, confusion matrix) as PNG in --out.

The reference models (mlp, cnn_a, cnn_b) follow the seed notebooks: all 60,000 training
images, the test set measured after every epoch. ``--model best`` never looks at the test
set until the end: it holds out the last 10% of the training images for validation,
keeps the weights of the epoch with the best validation accuracy (EarlyStopping with
restore_best_weights) and lets Adam's learning rate fall along a cosine (CosineDecay).
Its choices: BatchNormalization after each convolution and the hidden Dense layer (so the
first epochs already train fast), Dropout (0.25 after the convolutions, 0.5 before the
output) against over-fitting, and the cosine schedule for the last fine steps.

``--model resnet`` (``zoo.resnet``, a functional Model) trains the same way for 30 epochs,
on training images shifted at random by up to 2 pixels each way (``ImageDataGenerator``):
without them it fits the training set to 98% and falls behind best; flips on top cost it
0.3 points on the validation split (docs/performance.md, "The residual network").

What each choice buys, one change at a time (``--without schedule|batchnorm|dropout``,
``--augment``), with the seed-to-seed spread that says which effects are real, is measured
in docs/performance.md ("Accuracy").
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

import minicnn
from minicnn import plotting
from minicnn.augment import ImageDataGenerator
from minicnn.callbacks import Callback, EarlyStopping
from minicnn.datasets import DATA_HELP, load_fashion_mnist, to_float_images
from minicnn.optimizers import Adam, CosineDecay
from minicnn.zoo import MODELS

DEFAULT_BATCH = {"mlp": 64, "cnn_a": 64, "cnn_b": 32, "best": 64, "resnet": 64}
DEFAULT_EPOCHS = {"mlp": 10, "cnn_a": 10, "cnn_b": 10, "best": 20, "resnet": 30}


class TestSetScore(Callback):
    """After every epoch, the loss and accuracy on the test set, logged (and printed) as
    ``test_loss`` and ``test_accuracy``: measured, never trained on, and named as what they
    are rather than as validation data."""

    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def on_epoch_end(self, epoch, logs=None):
        loss, accuracy = self.model.evaluate(self.x, self.y, batch_size=256)
        logs.update(test_loss=loss, test_accuracy=accuracy)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["mlp", "cnn_a", "cnn_b", "best", "resnet"],
                        default="cnn_b",
                        help="mlp: Dense(256); cnn_a: two 2x2 convs; cnn_b: three 3x3 convs; "
                        "best: BatchNorm, Dropout, a schedule, validation split; resnet: "
                        "residual blocks (a functional Model), trained as best on shifted "
                        "images"
                        " (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="passes over the training set (default: 20 for best, 30 for "
                        "resnet, else 10)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per step (default: 64 for mlp and cnn_a, 32 for cnn_b, "
                        "as the reference notebooks)")
    parser.add_argument("--backend", choices=["numpy", "numba", "cython", "cuda"], default=None,
                        help="kernel backend (default: $MINICNN_BACKEND, else numba)")
    parser.add_argument("--limit", type=int, default=None,
                        help="train on the first N images only, for smoke runs (default: all "
                        "60,000)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the initial weights and the shuffling (default: %(default)s)")
    parser.add_argument("--data", default=None,
                        help=DATA_HELP)
    parser.add_argument("--without", nargs="*", default=[],
                        choices=["batchnorm", "dropout", "schedule"],
                        help="best only: leave these out, to measure what each buys "
                        "(default: none)")
    parser.add_argument("--augment", action="store_true",
                        help="best only: train on randomly flipped and shifted batches "
                        "(default: off; resnet always trains on shifted ones)")
    parser.add_argument("--out", default="runs", help="folder for the model and figures"
                        " (default: %(default)s)")
    parser.add_argument("--verbose", type=int, choices=[0, 1, 2], default=1,
                        help="0: silent, 1: a progress bar, 2: one line per epoch"
                        " (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv=None) -> float:
    args = parse_args(argv)
    if args.backend:
        minicnn.set_backend(args.backend)
    batch_size = DEFAULT_BATCH[args.model] if args.batch_size is None else args.batch_size
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist(args.data)
    if args.limit is not None:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
    x_train, x_test = to_float_images(x_train), to_float_images(x_test)

    epochs = DEFAULT_EPOCHS[args.model] if args.epochs is None else args.epochs
    if args.model in ("best", "resnet"):  # hold out validation data; the test set stays unseen
        model = MODELS["resnet"]() if args.model == "resnet" else MODELS["best"](
            batchnorm="batchnorm" not in args.without, dropout="dropout" not in args.without)
        steps = epochs * math.ceil(0.9 * len(x_train) / batch_size)
        optimizer = Adam(1e-3 if "schedule" in args.without else
                         CosineDecay(1e-3, decay_steps=steps))
        fit_args = {"callbacks": [EarlyStopping("val_accuracy", patience=epochs,
                                                restore_best_weights=True)]}
        cut = math.floor(0.9 * len(x_train))  # the last 10%, as validation_split=0.1 takes
        flips = args.model == "best"  # --augment's; resnet's recipe shifts only
        if args.augment or args.model == "resnet":
            x_train, y_train, fit_args["validation_data"] = (
                ImageDataGenerator(horizontal_flip=flips, width_shift_range=2,
                                   height_shift_range=2).flow(
                    x_train[:cut], y_train[:cut], batch_size=batch_size, seed=args.seed),
                None, (x_train[cut:], y_train[cut:]))
        else:
            fit_args["validation_split"] = 0.1
        monitored = "validation split"
    else:  # the seed notebooks' protocol: the test set scored after every epoch
        model = MODELS[args.model]()
        optimizer, monitored = "adam", "test-set"
        fit_args = {"callbacks": [TestSetScore(x_test, y_test)]}
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.summary()
    print(f"backend: {minicnn.get_backend().name}, batch size {batch_size}, "
          f"{len(y_train) if y_train is not None else x_train.n} training images")
    start = time.perf_counter()
    history = model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, seed=args.seed,
                        verbose=args.verbose, **fit_args)
    seconds = time.perf_counter() - start
    loss, accuracy = model.evaluate(x_test, y_test, batch_size=256)
    print(f"test accuracy: {accuracy:.4f} (loss {loss:.4f}); train accuracy "
          f"{history.history['accuracy'][-1]:.4f}; {seconds / epochs:.1f} s/epoch, "
          f"{seconds / 60:.1f} min in all")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / f"{args.model}.npz")
    probs = model.predict(x_test, batch_size=256)
    predicted = probs.argmax(axis=1)
    plotting.plot_history(history, path=out / f"{args.model}_history.png",
                          val_name=monitored,
                          title=f"{args.model} on Fashion-MNIST ({monitored} curves: measured, "
                          "never trained on)")
    plotting.plot_prediction(x_test[0], probs[0], int(y_test[0]),
                             path=out / f"{args.model}_prediction.png")
    plotting.plot_confusion_matrix(
        y_test, predicted, path=out / f"{args.model}_confusion.png",
        title=f"{args.model}: confusion matrix of the {len(y_test):,} test images\n"
        f"accuracy {np.mean(predicted == y_test):.2%}")
    plotting.plot_samples(x_test[:25], y_test[:25], predicted=predicted[:25],
                          path=out / f"{args.model}_samples.png")
    if args.model != "mlp":
        plotting.plot_filters(model.layers[0], path=out / f"{args.model}_filters.png",
                              title=f"{args.model}: the {model.layers[0].filters} kernels of "
                              "the first convolution")
    print(f"saved the model and figures in {out}/")
    return accuracy


if __name__ == "__main__":
    main()
