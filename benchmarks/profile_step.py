"""Profile training steps of a reference model on one backend (where does the time go?).

    python benchmarks/profile_step.py --backend cuda --model cnn_b --batch-size 128 --steps 50
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import make_model, minicnn_epoch, random_data  # noqa: E402

import minicnn  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="numba")
    parser.add_argument("--model", default="cnn_b")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    minicnn.set_backend(args.backend)
    x, y = random_data(args.batch_size * args.steps)
    model = make_model(args.model)
    minicnn_epoch(model, x[:args.batch_size * 2], y[:args.batch_size * 2], args.batch_size)
    profile = cProfile.Profile()
    profile.enable()
    seconds = minicnn_epoch(model, x, y, args.batch_size)
    profile.disable()
    print(f"{args.steps} steps: {seconds / args.steps * 1000:.2f} ms/step")
    pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
