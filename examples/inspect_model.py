"""Look inside a CNN trained on Fashion-MNIST: what its filters respond to, which pixels
decide its answers, a map of what it has learned (t-SNE of its penultimate layer beside
the pixels'), how its layers' activations evolve while it trains, where a training step's
time goes on each backend, and the model itself as a diagram.

    python examples/inspect_model.py                # runs/cnn_b.npz, if the main job saved it
    python examples/inspect_model.py --model runs/resnet.npz
    python examples/inspect_model.py --limit 3000   # fewer images for the statistics run
    python examples/inspect_model.py --map-method pca   # the linear map

(Named inspect_model.py, not inspect.py: a script called inspect.py would shadow Python's
own ``inspect`` module for everything it imports.) Figures go to --out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import minicnn
from minicnn import inspect, load_model, plotting
from minicnn.callbacks import LayerStats
from minicnn.datasets import DATA_HELP, load_fashion_mnist, to_float_images
from minicnn.zoo import cnn_b


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="runs/cnn_b.npz",
                        help="a saved model to inspect; trained afresh when missing "
                        "(default: %(default)s)")
    parser.add_argument("--limit", type=int, default=6000,
                        help="training images for a fresh model and the layer statistics "
                        "(default: %(default)s)")
    parser.add_argument("--map-images", type=int, default=2000,
                        help="test images on the map of what the model learned "
                        "(default: %(default)s)")
    parser.add_argument("--map-method", choices=["tsne", "pca"], default="tsne",
                        help="how the map is drawn: t-SNE (clusters) or PCA (linear) "
                        "(default: %(default)s)")
    parser.add_argument("--data", default=None, help=DATA_HELP)
    parser.add_argument("--out", default="runs/inspect", help="folder for the figures "
                        "(default: %(default)s)")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist(args.data)
    x_train, y_train = to_float_images(x_train[:args.limit]), y_train[:args.limit]
    x_test = to_float_images(x_test)

    # The layer statistics of a short training run of a fresh model, then the model to look
    # into: the saved one if there is one, else that fresh one.
    fresh = cnn_b()
    fresh.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    stats = LayerStats(every=10)
    fresh.fit(x_train, y_train, batch_size=32, epochs=1, seed=0, verbose=0, callbacks=[stats])
    plotting.plot_layer_stats(stats, path=out / "layer_stats.png")
    model = load_model(args.model) if Path(args.model).is_file() else fresh
    print(f"inspecting {args.model if model is not fresh else 'a fresh cnn_b'}")

    # Feature maps of the first test image, every convolution.
    maps = inspect.feature_maps(model, x_test[:8])
    for layer in model.layers:
        if isinstance(layer, minicnn.layers.Conv2D):
            plotting.plot_feature_maps(maps, layer=layer.name,
                                       path=out / f"feature_maps_{layer.name}.png")

    # Saliency beside the images: the first six right answers and the first six wrong ones.
    predicted = model.predict(x_test, batch_size=256).argmax(axis=1)
    right, wrong = np.flatnonzero(predicted == y_test)[:6], np.flatnonzero(predicted != y_test)[:6]
    for name, rows in (("right", right), ("wrong", wrong)):
        plotting.plot_saliency(x_test[rows], inspect.saliency(model, x_test[rows]),
                               y_test[rows], predicted[rows], path=out / f"saliency_{name}.png")

    # A map of the test images: their pixels beside what the layer before the classifier
    # makes of them, one dot per image, coloured by its true class.
    images, labels = x_test[:args.map_images], y_test[:args.map_images]
    plotting.plot_embedding({"pixels": images.reshape(len(images), -1),
                             "the layer before the classifier": inspect.embedding(model, images)},
                            labels, method=args.map_method, path=out / "embedding.png")

    # A step's profile on each backend here, side by side, and the model's diagram.
    profiles = {}
    for backend in minicnn.available_backends():
        if backend == "cuda":
            continue  # a GPU's profile: run this script with MINICNN_BACKEND=cuda
        with minicnn.use_backend(backend):
            rows = model.profile(x_train[:32], y_train[:32], steps=10)
        print(f"\n{backend}:")
        inspect.print_profile(rows)
        plotting.plot_profile(rows, path=out / f"profile_{backend}.png",
                              title=f"{model.name}, batch 32, {backend}: where a step's time goes")
        profiles[backend] = rows
    plotting.plot_model(model, out / "model.png")
    print(f"\nfigures in {out}/")
    return profiles


if __name__ == "__main__":
    main()
