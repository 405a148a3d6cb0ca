"""Each example runs: --help, and a tiny smoke run on small IDX files made here."""

import re
import subprocess
import sys

import numpy as np
import pytest

from minicnn import datasets
from tests.helpers import EXAMPLES, fake_fashion_folder, load_example


@pytest.mark.parametrize("name", ["xor", "train_mlp", "train_cnn", "augmentation", "inspect_model",
                                  "speedrun"])
def test_help(name):
    result = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "usage:" in result.stdout
    options = re.split(r"\n  (?=--)", result.stdout.split("options:")[1])[1:]
    assert options, result.stdout
    for option in options:  # every option explains itself and gives its default
        assert "default" in option, option


@pytest.fixture
def tiny_data(tmp_path, monkeypatch):
    """A folder of small IDX files and the checksum table that accepts them."""
    _, table = fake_fashion_folder(tmp_path / "data")
    monkeypatch.setattr(datasets, "FILES", table)
    return tmp_path / "data"


def test_xor_example_learns():
    predictions = load_example("xor").main(["--epochs", "1500"])
    np.testing.assert_array_equal(predictions > 0.5, [False, True, True, False])


@pytest.mark.parametrize("model", ["mlp", "cnn_a", "cnn_b", "best", "resnet"])
def test_train_cnn_smoke(tiny_data, tmp_path, model):
    out = tmp_path / "out"
    accuracy = load_example("train_cnn").main(["--model", model, "--epochs", "1", "--limit", "6",
                                       "--data", str(tiny_data), "--out", str(out),
                                       "--verbose", "0"])
    assert 0 <= accuracy <= 1
    assert (out / f"{model}.npz").is_file() and (out / f"{model}_history.png").is_file()


@pytest.mark.parametrize("validate", [False, True])
def test_speedrun_smoke(tiny_data, capsys, validate):
    """The speed-run scores the test set, or with --validate the held-out training images
    and never the test set; it prints the accuracy and the command's wall time."""
    args = ["--epochs", "1", "--limit", "8", "--data", str(tiny_data), "--quiet"]
    accuracy = load_example("speedrun").main(args + ["--validate"] * validate)
    assert 0 <= accuracy <= 1
    out = capsys.readouterr().out
    scored = "validation" if validate else "test"
    assert re.search(rf"^{scored} accuracy: \d\.\d{{4}}$", out, re.M), out
    assert re.search(r"^wall time: \d+\.\d s", out, re.M), out


def test_train_mlp_smoke(tiny_data, tmp_path):
    results = load_example("train_mlp").main(["--epochs", "2", "--limit", "50", "--data",
                                              str(tiny_data), "--out", str(tmp_path)])
    assert set(results) == {"raw", "standardised"}
    assert (tmp_path / "mlp_errors.png").is_file()


def test_augmentation_smoke(tiny_data, tmp_path):
    results = load_example("augmentation").main(["--samples", "6", "--epochs-plain", "1",
                                         "--epochs-augmented", "1", "--seeds", "1",
                                         "--data", str(tiny_data), "--out", str(tmp_path)])
    assert len(results["plain"]) == len(results["augmented"]) == 1


def test_train_cnn_names_the_test_set_as_the_test_set(tiny_data, tmp_path, capsys):
    """The seed models' per-epoch scores on the test set are printed and kept as test_*,
    never as val_* (which would claim validation data)."""
    load_example("train_cnn").main(["--model", "cnn_a", "--epochs", "2", "--limit", "6", "--out",
                            str(tmp_path), "--data", str(tiny_data), "--verbose", "2"])
    out = capsys.readouterr().out
    assert "test_accuracy:" in out and "val_" not in out


def test_inspect_model_smoke(tiny_data, tmp_path):
    profiles = load_example("inspect_model").main(["--limit", "40", "--data", str(tiny_data),
                                           "--model", str(tmp_path / "none.npz"),
                                           "--out", str(tmp_path)])
    assert "numpy" in profiles
    for name in ("layer_stats", "model", "feature_maps_conv2d", "saliency_right",
                 "profile_numpy", "embedding"):
        assert (tmp_path / f"{name}.png").is_file(), name
