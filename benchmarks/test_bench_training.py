"""Training-step throughput of the three reference models and the ResNet at batch 32 and 64,
for every available backend and (when installed) PyTorch on the CPU with as many threads as
cores.

    python -m pytest benchmarks/test_bench_training.py --benchmark-group-by=param:model

In one process PyTorch and minicnn's CPU backends share one OpenMP runtime and slow each
other down; for the PyTorch ratios run the two halves apart (``-k pytorch`` and
``-k minicnn``) or use epoch_time.py, which isolates PyTorch in its own process.
"""

import numpy as np
import pytest
from common import REFERENCE_BATCH, TorchTrainer, make_model, nchw, random_data

import minicnn
from minicnn.backends.threads import cpu_threads

MODELS = ["mlp", "cnn_a", "cnn_b", "resnet"]
BATCHES = [32, 64]


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("backend_name", minicnn.available_backends())
def test_minicnn_training_step(benchmark, backend_name, model, batch):
    with minicnn.use_backend(backend_name):
        net = make_model(model)
        x, y = random_data(batch)
        net.train_on_batch(x, y)  # compile / warm up
        benchmark.extra_info["samples_per_step"] = batch
        benchmark(net.train_on_batch, x, y)  # returns the loss: device work is finished


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("model", MODELS)
def test_pytorch_cpu_training_step(benchmark, model, batch):
    pytest.importorskip("torch")
    trainer = TorchTrainer(model, "cpu", cpu_threads())
    x, y = random_data(batch)
    trainer.epoch(x, y, batch)
    benchmark.extra_info["samples_per_step"] = batch
    benchmark(trainer.epoch, x, y, batch)


@pytest.mark.parametrize("name", sorted(REFERENCE_BATCH))
def test_models_agree_on_parameter_count(name):
    """The PyTorch twins are the same networks (a benchmark of a different model is void):
    as many trainable weights (BatchNorm's moving statistics are buffers in PyTorch) and
    the same output shape."""
    pytest.importorskip("torch")
    import torch

    twin, model = TorchTrainer(name, "cpu").model, make_model(name)
    assert sum(p.numel() for p in twin.parameters()) == model.count_params(trainable=True)
    assert tuple(twin(torch.zeros((2, 1, 28, 28))).shape) == (2, *model.output_shape)


def test_pytorch_gets_nchw_contiguous_images():
    """With one channel a transposed NumPy view looks contiguous yet reaches PyTorch as
    channels-last: the benchmark hands PyTorch a freshly laid-out NCHW array instead."""
    x, _ = random_data(3)
    images = nchw(x)
    assert images.shape == (3, 1, 28, 28)
    assert images.strides == (784 * 4, 784 * 4, 28 * 4, 4)  # N, C, H, W: PyTorch's default
    np.testing.assert_array_equal(images[:, 0], x[..., 0])
    torch = pytest.importorskip("torch")
    tensor = TorchTrainer("cnn_b", "cpu").inputs(x)
    assert tensor.is_contiguous() and tensor.stride()[1] == 28 * 28
    assert not tensor.is_contiguous(memory_format=torch.channels_last) or tensor.stride(1) != 1
