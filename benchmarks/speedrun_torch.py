"""examples/speedrun.py's recipe in PyTorch (CPU): its twin, for a whole-command comparison.

    python benchmarks/speedrun_torch.py --seed 3                  # NCHW, PyTorch's default
    python benchmarks/speedrun_torch.py --seed 3 --channels-last  # NHWC
    python benchmarks/speedrun_torch.py --seed 3 --keep-freed-memory   # malloc as minicnn's
    python benchmarks/speedrun_ladder.py --rungs --torch nchw channels_last   # both, side by side

The same recipe as the speed-run's last rung (``speedrun.LADDER[-1]``): zoo.best without
Dropout (``common.torch_twin``: Keras' BatchNorm epsilon and momentum), Glorot-uniform
weights and zero biases as minicnn's layers start, Adam (Keras' epsilon 1e-7) with a cosine
decay to zero over every step, label smoothing, the batch size and epochs, all 60,000
training images shuffled each epoch, scored on the test set. The images stay on the host as
uint8 and each batch is scaled to float32 in [0, 1] when it is drawn. Prints ``test
accuracy: 0.9xxx`` and the wall time of the whole command (imports, data, training,
scoring), as the speed-run does. ``--keep-freed-memory`` sets glibc's malloc as minicnn's
CPU backends do (``minicnn.backends.heap``): a step then reuses the last one's memory.
"""

from __future__ import annotations

import time

START = time.perf_counter()  # before the imports: the wall time is the whole command's

import argparse  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path[:0] = [str(Path(__file__).resolve().parent),
                str(Path(__file__).resolve().parent.parent / "examples")]
from common import torch_twin  # noqa: E402
from speedrun import LADDER  # noqa: E402

from minicnn import zoo  # noqa: E402
from minicnn.backends.heap import keep_freed_memory  # noqa: E402
from minicnn.datasets import DATA_HELP, load_fashion_mnist  # noqa: E402


def keras_init(model: torch.nn.Module, seed: int) -> None:
    """Glorot-uniform weights and zero biases in every convolution and dense layer, as
    minicnn's (and Keras') layers start; PyTorch's own default is Kaiming-uniform."""
    torch.manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)


def images(x: np.ndarray, memory_format) -> torch.Tensor:
    """uint8 images (N, 28, 28) -> float32 (N, 1, 28, 28) in [0, 1], in ``memory_format``."""
    return (torch.from_numpy(x).unsqueeze(1).float().div_(255)
            .contiguous(memory_format=memory_format))


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--channels-last", action="store_true",
                        help="NHWC model and batches instead of PyTorch's default NCHW")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="glibc's malloc keeps freed memory for reuse, as minicnn's CPU "
                        "backends set it (default: PyTorch's own setting, off)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="override the recipe's epochs, for smoke runs (default: its)")
    parser.add_argument("--limit", type=int, default=None,
                        help="train on the first N images only, for smoke runs (default: all)")
    parser.add_argument("--data", default=None, help=DATA_HELP)
    args = parser.parse_args(argv)
    if args.keep_freed_memory:
        keep_freed_memory()
    recipe = LADDER[-1]
    epochs = args.epochs or recipe.epochs
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist(args.data)
    x_train, y_train = x_train[:args.limit], y_train[:args.limit]

    model = torch_twin(zoo.best(dropout=recipe.dropout))
    model(torch.zeros((2, 1, 28, 28)))  # materialise the lazy layers
    keras_init(model, args.seed)
    model = model.to(memory_format=memory_format)
    steps = epochs * math.ceil(len(x_train) / recipe.batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.learning_rate, eps=1e-7)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=0.0)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    labels = torch.from_numpy(y_train.astype(np.int64))
    rng = np.random.default_rng(args.seed)
    print(f"pytorch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{'channels-last' if args.channels_last else 'NCHW'}"
          f"{', kept heap' if args.keep_freed_memory else ''}: {recipe}; "
          f"{len(x_train):,} training images, seed {args.seed}")
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(x_train))
        total, start = 0.0, time.perf_counter()
        for i in range(0, len(order), recipe.batch_size):
            batch = order[i:i + recipe.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(images(x_train[batch], memory_format)), labels[batch])
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(batch)
        print(f"Epoch {epoch + 1}/{epochs} - {time.perf_counter() - start:.1f}s - "
              f"loss: {total / len(order):.4f}")
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(images(x_test[i:i + 1000], memory_format)).argmax(1)
                           == torch.from_numpy(y_test[i:i + 1000].astype(np.int64))).sum())
                      for i in range(0, len(x_test), 1000))
    accuracy = correct / len(x_test)
    print(f"test accuracy: {accuracy:.4f}")
    print(f"wall time: {time.perf_counter() - START:.1f} s (imports, data, training, scoring)")
    return accuracy


if __name__ == "__main__":
    main()
