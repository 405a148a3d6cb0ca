import numpy as np
import pytest

from minicnn import History, plotting
from minicnn.layers import Conv2D
from minicnn.metrics import confusion_matrix

PNG = b"\x89PNG"


def _check(fig, path):
    assert fig.axes
    assert path.read_bytes()[:4] == PNG and path.stat().st_size > 1000


def test_every_figure_renders_to_png(tmp_path, rng):
    x = rng.integers(0, 255, (12, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 12)
    history = History()
    for epoch in range(3):
        history.append(epoch, {"loss": 1.0 / (epoch + 1), "accuracy": 0.5 + epoch / 10,
                               "val_loss": 1.2 / (epoch + 1), "val_accuracy": 0.4 + epoch / 10})
    conv = Conv2D(8, 3)
    conv.build((28, 28, 1), rng)
    probs = rng.dirichlet(np.ones(10))
    figures = {
        "samples": plotting.plot_samples(x, y, path=tmp_path / "samples.png"),
        "history": plotting.plot_history(history, path=tmp_path / "history.png"),
        "filters": plotting.plot_filters(conv, path=tmp_path / "filters.png"),
        "prediction": plotting.plot_prediction(x[0], probs, int(y[0]),
                                               path=tmp_path / "prediction.png"),
        "confusion": plotting.plot_confusion_matrix(y, rng.integers(0, 10, 12),
                                                    path=tmp_path / "confusion.png"),
    }
    for name, fig in figures.items():
        _check(fig, tmp_path / f"{name}.png")
    assert len(figures["history"].axes[0].lines) == 2


def test_prediction_colours_true_blue_wrong_red():
    probs = np.array([0.1, 0.7, 0.2])
    fig = plotting.plot_prediction(np.zeros((4, 4)), probs, 2, class_names=["a", "b", "c"])
    bars = fig.axes[1].patches
    assert bars[1].get_facecolor()[:3] == pytest.approx((1, 0, 0))
    assert bars[2].get_facecolor()[:3] == pytest.approx((0, 0, 1))


def test_confusion_matrix_counts():
    np.testing.assert_array_equal(confusion_matrix([0, 1, 1, 2], [0, 2, 1, 2], 3),
                                  [[1, 0, 0], [0, 1, 1], [0, 0, 1]])
