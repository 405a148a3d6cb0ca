"""The speed-run's PyTorch twin (speedrun_torch.py) runs its recipe and reports like the
speed-run, so that speedrun_ladder.py --torch can time the two whole commands."""

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from minicnn import datasets  # noqa: E402
from tests.helpers import fake_fashion_folder  # noqa: E402


@pytest.mark.parametrize("options", [[], ["--channels-last", "--keep-freed-memory"]])
def test_twin_trains_and_reports_like_the_speedrun(tmp_path, monkeypatch, capsys, options):
    pytest.importorskip("torch")
    import speedrun_torch
    from speedrun_ladder import TORCH_VARIANTS

    _, table = fake_fashion_folder(tmp_path)
    monkeypatch.setattr(datasets, "FILES", table)
    accuracy = speedrun_torch.main(["--epochs", "2", "--data", str(tmp_path), *options])
    out = capsys.readouterr().out
    assert 0 <= accuracy <= 1
    assert re.search(r"^test accuracy: \d\.\d{4}$", out, re.M), out
    assert re.search(r"^wall time: \d+\.\d s", out, re.M), out
    assert len(re.findall(r"^Epoch \d/2 ", out, re.M)) == 2, out
    assert options in TORCH_VARIANTS.values()  # a variant speedrun_ladder.py --torch runs


def test_twin_is_the_speedrun_model():
    """Its network: zoo.best without Dropout, every trainable weight accounted for."""
    torch = pytest.importorskip("torch")
    from common import torch_twin

    from minicnn import zoo

    model = zoo.best(dropout=False)
    twin = torch_twin(model)
    twin(torch.zeros((2, 1, 28, 28)))
    assert not any(isinstance(m, torch.nn.Dropout) for m in twin.modules())
    assert sum(p.numel() for p in twin.parameters()) == model.count_params(trainable=True)
