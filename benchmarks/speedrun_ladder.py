"""The speed-run's ablation ladder, measured: each rung of examples/speedrun.py over seeds on
the validation split, then the speed-run itself over seeds on the test set, and (``--torch``)
its PyTorch twin (benchmarks/speedrun_torch.py) on the same seeds, each seed's runs side by
side in time. Every run is its own process (the whole command's wall time, as a user runs
it). Prints a Markdown table.

    python benchmarks/speedrun_ladder.py                          # rungs 1-4, 3 seeds; final, 5
    python benchmarks/speedrun_ladder.py --rungs 0 --seeds 0 --final-seeds
    python benchmarks/speedrun_ladder.py --rungs --torch nchw channels_last_kept   # vs PyTorch
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPEEDRUN = HERE.parent / "examples" / "speedrun.py"
TORCH_TWIN = HERE / "speedrun_torch.py"
TORCH_VARIANTS = {"nchw": [], "channels_last": ["--channels-last"],  # "_kept": malloc as ours
                  "nchw_kept": ["--keep-freed-memory"],
                  "channels_last_kept": ["--channels-last", "--keep-freed-memory"]}


def run(rung: int | None, seed: int, torch_variant: str | None = None) -> tuple[float, float]:
    """(accuracy, wall seconds) of one speed-run command: a ladder rung on the validation
    split, or (rung None) the speed-run scored on the test set, or its PyTorch twin in
    ``torch_variant`` (``TORCH_VARIANTS``)."""
    if torch_variant is not None:
        args = [sys.executable, str(TORCH_TWIN), "--seed", str(seed),
                *TORCH_VARIANTS[torch_variant]]
        name = f"pytorch {torch_variant}"
    else:
        args = [sys.executable, str(SPEEDRUN), "--seed", str(seed), "--quiet"]
        args += ["--rung", str(rung), "--validate"] if rung is not None else []
        name = "final" if rung is None else f"rung {rung}"
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    accuracy = float(re.search(r"^(?:test|validation) accuracy: ([\d.]+)$", out, re.M)[1])
    seconds = float(re.search(r"^wall time: ([\d.]+) s", out, re.M)[1])
    print(f"# {name} seed {seed}: {accuracy:.4f} in {seconds:.1f} s", file=sys.stderr,
          flush=True)
    return accuracy, seconds


def row(name: str, results: list[tuple[float, float]]) -> str:
    accuracies = [100 * a for a, _ in results]
    spread = f" +- {statistics.stdev(accuracies):.2f}" if len(accuracies) > 1 else ""
    return (f"| {name} | {statistics.mean(accuracies):.2f}{spread} (min "
            f"{min(accuracies):.2f}) | {statistics.mean(s for _, s in results):.0f} s | "
            f"{len(results)} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rungs", type=int, nargs="*", default=[1, 2, 3, 4],
                        help="ladder rungs to measure on the validation split "
                        "(default: %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2],
                        help="seeds of each rung (default: %(default)s)")
    parser.add_argument("--final-seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4],
                        help="seeds of the speed-run on the test set; none: skip it "
                        "(default: %(default)s)")
    parser.add_argument("--torch", nargs="*", choices=list(TORCH_VARIANTS), default=[],
                        help="also run the PyTorch twin in these variants on the final seeds, "
                        "each seed's runs in turn (default: none)")
    args = parser.parse_args(argv)
    lines = ["| run | accuracy % (mean +- sd, min) | wall time | seeds |", "|---|---|---|---|"]
    for rung in args.rungs:
        lines.append(row(f"rung {rung} (validation)", [run(rung, s) for s in args.seeds]))
    engines = [None, *args.torch]  # None: minicnn's speed-run
    results = {engine: [] for engine in engines}
    for seed in args.final_seeds:
        for engine in engines:
            results[engine].append(run(None, seed, engine))
    for engine, runs in results.items():
        if runs:
            lines.append(row("speed-run (test set)" if engine is None else
                             f"PyTorch twin, {engine} (test set)", runs))
    if args.torch and args.final_seeds:
        ours = statistics.mean(s for _, s in results[None])
        lines.append("")
        lines += [f"minicnn's speed-run against PyTorch {engine}: "
                  f"{statistics.mean(s for _, s in results[engine]) / ours:.2f}x faster "
                  "(mean wall times)" for engine in args.torch]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
