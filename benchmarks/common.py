"""Shared pieces of the speed benchmarks: the reference models in minicnn and in PyTorch,
and one timed training epoch."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np

import minicnn
from minicnn.callbacks import Callback
from minicnn.layers import (
    Activation,
    Add,
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    MaxPool2D,
)
from minicnn.zoo import MODELS

REFERENCE_BATCH = {"mlp": 64, "cnn_a": 64, "cnn_b": 32, "best": 64, "resnet": 64}


def make_model(name: str, seed: int = 0):
    model = MODELS[name]()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.build(seed=seed)
    return model


def torch_model(name: str):
    """Zoo model ``name`` in PyTorch (NCHW): ``torch_twin(MODELS[name]())``."""
    return torch_twin(MODELS[name]())


def torch_twin(reference):
    """The same network as minicnn model ``reference`` in PyTorch (NCHW), built node by
    node from its graph (a Sequential's is its chain): BatchNorm with Keras' epsilon and
    momentum (PyTorch's momentum is 1 - Keras'). A strided 3x3 "same" convolution pads one
    pixel on every side (PyTorch's own way; TensorFlow's pads the bottom and right only):
    the same shapes, weights and FLOPs."""
    import torch

    steps = [_torch_layer(node.layer, torch) for node in reference.nodes()]
    wiring = [node.inputs for node in reference.nodes()]
    if wiring == list(range(len(wiring))):  # a chain: PyTorch's own Sequential
        return torch.nn.Sequential(*[m for step in steps for m in step])
    return _torch_graph(torch, [torch.nn.Sequential(*step) for step in steps], wiring)


def _torch_layer(layer, torch) -> list:
    """The PyTorch modules of one minicnn layer (its activation included; softmax is inside
    CrossEntropyLoss)."""
    if isinstance(layer, Conv2D):
        stride = layer.strides
        padding = 0 if layer.padding == "valid" else \
            "same" if stride == (1, 1) else tuple(k // 2 for k in layer.kernel_size)
        modules = [torch.nn.LazyConv2d(layer.filters, layer.kernel_size, stride, padding,
                                       bias=layer.use_bias)]
    elif isinstance(layer, MaxPool2D):
        modules = [torch.nn.MaxPool2d(layer.pool_size, layer.strides)]
    elif isinstance(layer, GlobalAveragePooling2D):
        modules = [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()]
    elif isinstance(layer, Flatten):
        modules = [torch.nn.Flatten()]
    elif isinstance(layer, Dense):
        modules = [torch.nn.LazyLinear(layer.units, bias=layer.use_bias)]
    elif isinstance(layer, BatchNormalization):
        norm = torch.nn.LazyBatchNorm2d if len(layer.input_shape) == 3 else \
            torch.nn.LazyBatchNorm1d
        modules = [norm(eps=layer.epsilon, momentum=1 - layer.momentum)]
    elif isinstance(layer, Dropout):
        modules = [torch.nn.Dropout(layer.rate)]
    elif isinstance(layer, (Add, Activation)):
        modules = []
    else:
        raise TypeError(f"no PyTorch twin for {type(layer).__name__}")
    if layer.activation == "relu":  # a layer's own, or a ReLU layer
        modules.append(torch.nn.ReLU())
    elif layer.activation not in ("linear", "softmax"):
        raise TypeError(f"no PyTorch twin for {layer.name}'s activation {layer.activation}")
    return modules


def _torch_graph(torch, steps: list, wiring: list):
    """A torch.nn.Module running ``steps`` as the graph's nodes: step k reads the tensors
    ``wiring[k]`` names (0 the input, j step j - 1's output; a tuple is an Add's inputs)."""

    class Graph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.steps = torch.nn.ModuleList(steps)

        def forward(self, x):
            values = [x]
            for step, reads in zip(self.steps, wiring):
                h = sum(values[i] for i in reads) if isinstance(reads, tuple) else values[reads]
                values.append(step(h))
            return values[-1]

    return Graph()


def minicnn_epoch(model, x: np.ndarray, y: np.ndarray, batch_size: int) -> float:
    """Seconds for one call of fit: one training epoch over (x, y), and fit's one-time
    check and copy of the inputs."""
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    return time.perf_counter() - start


class EpochTimer(Callback):
    """The wall time of each epoch of a fit (what Keras reports per epoch)."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def minicnn_epochs(model, x: np.ndarray, y: np.ndarray, batch_size: int,
                   epochs: int) -> list[float]:
    """Seconds of each of ``epochs`` training epochs in one fit over (x, y), in order like
    the PyTorch twin's. Like its loop over tensors made beforehand, an epoch leaves out
    fit's one-time check and copy of the inputs (measured: 0.02-0.06 ms per batch of 32
    when a fit runs a single epoch of 3,072 images)."""
    timer = EpochTimer()
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, shuffle=False,
              callbacks=[timer])
    return timer.seconds


def nchw(x: np.ndarray) -> np.ndarray:
    """NHWC images -> a new NCHW array with PyTorch's default (contiguous NCHW) strides.

    ``np.ascontiguousarray(x.transpose(0, 3, 1, 2))`` is not enough: with one channel NumPy
    calls the transposed view contiguous and copies nothing, ``torch.from_numpy`` keeps its
    strides (H*W*C, 1, W*C, C), and PyTorch then runs the whole network channels-last.
    """
    n, h, w, c = x.shape
    out = np.empty((n, c, h, w), dtype=np.float32)
    out[...] = x.transpose(0, 3, 1, 2)
    return out


class TorchTrainer:
    """Adam + cross-entropy training of ``torch_model(name)`` on ``device``, in PyTorch's
    default NCHW layout or, with ``channels_last``, its NHWC one (model and inputs)."""

    def __init__(self, name: str, device: str, threads: int | None = None,
                 channels_last: bool = False):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.torch, self.device = torch, device
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = torch_model(name).to(device)
        self.model(torch.zeros((2, 1, 28, 28), device=device))  # materialise lazy layers
        self.model = self.model.to(memory_format=self.memory_format)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3, eps=1e-7)
        self.loss = torch.nn.CrossEntropyLoss()

    def inputs(self, x: np.ndarray):
        """NHWC NumPy images -> the tensor this trainer's layout wants."""
        return self.torch.from_numpy(nchw(x)).contiguous(memory_format=self.memory_format)

    def epoch(self, x: np.ndarray, y: np.ndarray, batch_size: int) -> float:
        torch = self.torch
        xs = self.inputs(x)
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


TORCH_LAYOUTS = {"nchw": False, "channels_last": True}
# Each layout also runs with glibc's malloc keeping freed memory, as minicnn's CPU backends
# run (``minicnn.backends.heap``): PyTorch's steps allocate and free alike, so the peer is
# timed with the same setting as well as without it.
TORCH_HEAPS = {"": False, ", kept heap": True}


def torch_epoch_seconds(name: str, device: str, batch: int, samples: int, real: bool,
                        epochs: int, threads: int | None) -> dict[str, float]:
    """Best epoch time of the PyTorch twin in each layout and heap setting (``TORCH_HEAPS``),
    each measured in a fresh process.

    A separate process keeps the two engines' OpenMP thread pools from meeting: in one
    process they share one OpenMP runtime, and whichever ran first slows the other down.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    seconds = {}
    for layout, channels_last in TORCH_LAYOUTS.items():
        for heap, kept in TORCH_HEAPS.items():
            code = (
                f"import sys; sys.path.insert(0, {here!r}); import torch\n"
                + ("from minicnn.backends.heap import keep_freed_memory; keep_freed_memory()\n"
                   if kept else "") +
                "from common import TorchTrainer, load_data\n"
                f"x, y = load_data({real!r}, {samples!r})\n"
                f"t = TorchTrainer({name!r}, {device!r}, {threads!r}, {channels_last!r})\n"
                f"t.epoch(x[:{batch} * 4], y[:{batch} * 4], {batch})\n"
                f"print(min(t.epoch(x, y, {batch}) for _ in range({epochs})))\n"
            )
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True)
            seconds[layout + heap] = float(out.stdout.strip().splitlines()[-1])
    return seconds


def training_flops_per_sample(model) -> int:
    """FLOPs of one training sample's matrix products, counted from the layer shapes:
    forward, input gradient (not for the first layer: nobody needs it) and weight gradient,
    2 FLOPs per multiply-add. Pooling, activations and the optimizer are left out."""
    total = 0
    for node in model.nodes():
        layer, in_shape = node.layer, node.layer.input_shape
        if isinstance(layer, Conv2D):
            out_shape = layer.compute_output_shape(in_shape)
            kh, kw = layer.kernel_size
            macs = out_shape[0] * out_shape[1] * kh * kw * in_shape[2] * layer.filters
        elif isinstance(layer, Dense):
            macs = in_shape[0] * layer.units
        else:
            macs = 0
        total += 2 * macs * (2 if node.inputs == 0 else 3)  # the input's gradient: unused
    return total


def gemm_peak_gflops(threads: int, n: int = 4096, repeats: int = 3) -> float:
    """The machine's float32 matrix-product speed: a large square product through NumPy's
    BLAS on ``threads`` threads, best of ``repeats``."""
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    best = float("inf")
    with threadpool_limits(threads, user_api="blas"):
        for _ in range(repeats):
            start = time.perf_counter()
            a @ a
            best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


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
