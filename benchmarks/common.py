"""Shared pieces of the speed benchmarks: the reference models in minicnn and in PyTorch,
and one timed training epoch."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np

import minicnn
from minicnn.layers import Conv2D, Dense, Flatten, MaxPool2D
from minicnn.zoo import MODELS

REFERENCE_BATCH = {"mlp": 64, "cnn_a": 64, "cnn_b": 32}


def make_model(name: str, seed: int = 0):
    model = MODELS[name]()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.build(seed)
    return model


def torch_model(name: str):
    """The same architecture in PyTorch (NCHW), built layer by layer from the minicnn model."""
    import torch

    reference = MODELS[name]()
    layers, channels = [], reference.input_shape[-1]
    for layer in reference.layers:
        if isinstance(layer, Conv2D):
            layers.append(torch.nn.Conv2d(channels, layer.filters, layer.kernel_size,
                                          layer.strides, padding=layer.padding))
            channels = layer.filters
        elif isinstance(layer, MaxPool2D):
            layers.append(torch.nn.MaxPool2d(layer.pool_size, layer.strides))
        elif isinstance(layer, Flatten):
            layers.append(torch.nn.Flatten())
        elif isinstance(layer, Dense):
            layers.append(torch.nn.LazyLinear(layer.units))
        if layer.activation == "relu":
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)  # softmax is inside CrossEntropyLoss


def minicnn_epoch(model, x: np.ndarray, y: np.ndarray, batch_size: int) -> float:
    """Seconds for one training epoch over (x, y)."""
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    return time.perf_counter() - start


class TorchTrainer:
    """Adam + cross-entropy training of ``torch_model(name)`` on ``device``."""

    def __init__(self, name: str, device: str, threads: int | None = None):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.torch, self.device = torch, device
        self.model = torch_model(name).to(device)
        self.model(torch.zeros((2, 1, 28, 28), device=device))  # materialise lazy layers
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3, eps=1e-7)
        self.loss = torch.nn.CrossEntropyLoss()

    def epoch(self, x: np.ndarray, y: np.ndarray, batch_size: int) -> float:
        torch = self.torch
        xs = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        ys = torch.from_numpy(y.astype(np.int64))
        if self.device != "cpu":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for i in range(0, len(xs), batch_size):
            xb = xs[i:i + batch_size].to(self.device, non_blocking=True)
            yb = ys[i:i + batch_size].to(self.device, non_blocking=True)
            self.optimizer.zero_grad()
            self.loss(self.model(xb), yb).backward()
            self.optimizer.step()
        if self.device != "cpu":
            torch.cuda.synchronize()
        return time.perf_counter() - start


def torch_epoch_seconds(name: str, device: str, batch: int, samples: int, real: bool,
                        epochs: int, threads: int | None) -> float:
    """Best epoch time of the PyTorch twin, measured in a fresh process.

    A separate process keeps the two engines' OpenMP thread pools from meeting: in one
    process they share one OpenMP runtime, and whichever ran first slows the other down.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    code = (
        f"import sys; sys.path.insert(0, {here!r}); import torch\n"
        "from common import TorchTrainer, load_data\n"
        f"x, y = load_data({real!r}, {samples!r})\n"
        f"t = TorchTrainer({name!r}, {device!r}, {threads!r})\n"
        f"t.epoch(x[:{batch} * 4], y[:{batch} * 4], {batch})\n"
        f"print(min(t.epoch(x, y, {batch}) for _ in range({epochs})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip().splitlines()[-1])


def load_data(real: bool, samples: int):
    """Fashion-MNIST's training set (scaled, channel axis) or random data of its shape."""
    if real:
        from minicnn.datasets import load_fashion_mnist, to_float_images
        (x, y), _ = load_fashion_mnist()
        return to_float_images(x), y
    return random_data(samples)


def random_data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, n)


def available(name: str) -> bool:
    return name in minicnn.available_backends()
