"""Training-step throughput of the three reference models at batch 32 and 64, for every
available backend and (when installed) PyTorch on the CPU with as many threads as cores.

    python -m pytest benchmarks/test_bench_training.py --benchmark-group-by=param:model

In one process PyTorch and minicnn's CPU backends share one OpenMP runtime and slow each
other down; for the PyTorch ratios run the two halves apart (``-k pytorch`` and
``-k minicnn``) or use epoch_time.py, which isolates PyTorch in its own process.
"""

import os

import pytest
from common import TorchTrainer, make_model, random_data

import minicnn

MODELS = ["mlp", "cnn_a", "cnn_b"]
BATCHES = [32, 64]


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("backend_name", minicnn.available_backends())
def test_minicnn_training_step(benchmark, backend_name, model, batch):
    with minicnn.use_backend(backend_name) as backend:
        net = make_model(model)
        x, y = net._prepare(*random_data(batch))
        xb, yb = backend.to_device(x), backend.to_device(y)
        net._place(backend)
        net.train_step(xb, yb)  # compile / warm up
        benchmark.extra_info["samples_per_step"] = batch
        benchmark(net.train_step, xb, yb)  # returns the loss: device work is finished


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("model", MODELS)
def test_pytorch_cpu_training_step(benchmark, model, batch):
    pytest.importorskip("torch")
    trainer = TorchTrainer(model, "cpu", os.cpu_count())
    x, y = random_data(batch)
    trainer.epoch(x, y, batch)
    benchmark.extra_info["samples_per_step"] = batch
    benchmark(trainer.epoch, x, y, batch)


def test_models_agree_on_parameter_count():
    """The PyTorch twins are the same networks (a benchmark of a different model is void)."""
    pytest.importorskip("torch")
    for name in MODELS:
        twin = TorchTrainer(name, "cpu").model
        assert sum(p.numel() for p in twin.parameters()) == make_model(name).count_params(), name
