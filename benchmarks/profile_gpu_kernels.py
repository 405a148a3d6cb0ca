"""GPU time per CUDA kernel of a training step, through PyTorch's CUPTI profiler.

    python benchmarks/profile_gpu_kernels.py --model cnn_b --batch-size 128

Compare the kernels' total with the wall time per step (profile_step.py): the difference
is host-side launch overhead.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import make_model, random_data  # noqa: E402

import minicnn  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="cnn_b")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)
    import torch
    from numba import cuda

    minicnn.set_backend("cuda")
    model = make_model(args.model)
    x, y = random_data(args.batch_size)
    for _ in range(3):
        model.train_on_batch(x, y)  # compile and warm up
    cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(args.steps):
            model.train_on_batch(x, y)
        cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=20,
                                    max_name_column_width=50))


if __name__ == "__main__":
    main()
