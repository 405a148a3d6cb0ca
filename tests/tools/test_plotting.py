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


def test_an_embedding_map_draws_a_dot_per_sample_side_by_side(tmp_path, rng):
    """Maps of the same samples side by side, one dot per sample, a legend entry per class
    present, named."""
    labels = np.arange(40) % 4
    pixels = rng.standard_normal((40, 30)) + 3 * np.eye(4, 30)[labels]
    fig = plotting.plot_embedding({"pixels": pixels, "layer": pixels[:, :2]}, labels,
                                  method="pca", path=tmp_path / "map.png")
    _check(fig, tmp_path / "map.png")
    assert [ax.get_title() for ax in fig.axes] == ["pixels (pca)", "layer (pca)"]
    assert sum(len(c.get_offsets()) for c in fig.axes[0].collections) == 40
    assert [t.get_text() for t in fig.legends[0].get_texts()] == \
        ["T-shirt/top", "Trouser", "Pullover", "Dress"]
    flat = plotting.plot_embedding(pixels[:, :2], labels, method=None)
    np.testing.assert_array_equal(flat.axes[0].collections[0].get_offsets(),
                                  pixels[labels == 0, :2])


def test_prediction_colours_true_blue_wrong_red():
    probs = np.array([0.1, 0.7, 0.2])
    fig = plotting.plot_prediction(np.zeros((4, 4)), probs, 2, class_names=["a", "b", "c"])
    bars = fig.axes[1].patches
    assert bars[1].get_facecolor()[:3] == pytest.approx((1, 0, 0))
    assert bars[2].get_facecolor()[:3] == pytest.approx((0, 0, 1))


def test_confusion_matrix_counts():
    np.testing.assert_array_equal(confusion_matrix([0, 1, 1, 2], [0, 2, 1, 2], 3),
                                  [[1, 0, 0], [0, 1, 1], [0, 0, 1]])


def test_figures_show_inline_in_a_notebook():
    """IPython displays any object with ``_repr_png_``: a cell that returns a figure of ours
    shows it, without pyplot or a Jupyter dependency."""
    fig = plotting.plot_history({"loss": [1.0, 0.5], "accuracy": [0.5, 0.8]})
    png = fig._repr_png_()
    assert png.startswith(b"\x89PNG")


def test_the_progress_bar_redraws_in_place_in_a_notebook(monkeypatch):
    """ipykernel's output stream is no terminal, yet a notebook honours a carriage return."""
    import io
    import sys
    import types

    from minicnn.progress import Progbar

    class OutStream(io.StringIO):  # what ipykernel gives a notebook cell as sys.stdout
        pass

    OutStream.__module__ = "ipykernel.iostream"
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    stream = OutStream()
    bar = Progbar(10, verbose=1, stream=stream)
    bar._last_draw = -1.0
    bar.update(5, {"loss": 0.5})
    assert stream.getvalue().startswith("\r") and "5/10" in stream.getvalue()
    plain = io.StringIO()
    quiet = Progbar(10, verbose=1, stream=plain)  # a log file: nothing until the epoch ends
    quiet._last_draw = -1.0
    quiet.update(5, {"loss": 0.5})
    assert plain.getvalue() == ""


@pytest.mark.parametrize("draw, message", [
    (lambda x, y: plotting.plot_samples(x, y, class_names=["a", "b"]),
     r"class_names has 2 names, but y needs 10 classes"),
    (lambda x, y: plotting.plot_samples(x, y, predicted=y + 5),
     r"class_names has 10 names, but predicted needs 15"),
    (lambda x, y: plotting.plot_samples(x, y - 20), r"y must be class indices >= 0"),
    (lambda x, y: plotting.plot_samples(x, y + 0.5), r"y must be class indices \(integers\)"),
    (lambda x, y: plotting.plot_prediction(x[0], np.full(3, 1 / 3), 0),
     r"class_names has 10 names, but probs has 3 classes"),
    (lambda x, y: plotting.plot_prediction(x[0], np.full(10, 0.1), 12),
     r"true_label needs 13 classes"),
    (lambda x, y: plotting.plot_confusion_matrix(y, y, class_names=["a"] * 5),
     r"but y_true needs 10 classes"),
    (lambda x, y: plotting.plot_saliency(x.reshape(len(x), -1), x.reshape(len(x), -1)),
     r"x must be images, \(N, H, W\) or \(N, H, W, C\), got shape \(12, 784\).*reshape"),
    (lambda x, y: plotting.plot_saliency(x, x[:, :5]), r"saliency must have x's shape"),
    (lambda x, y: plotting.plot_saliency(x, x, predicted=y, class_names=["a", "b", "c"]),
     r"class_names has 3 names, but predicted needs 6"),  # of the first n=6
    (lambda x, y: plotting.plot_embedding(x.reshape(12, -1)[:10], y, method="pca"),
     r"points must be \(N, D\) with one row per label \(12\), got shape \(10, 784\)"),
    (lambda x, y: plotting.plot_embedding({"pixels": x}, y, method="pca"),
     r"points 'pixels' must be \(N, D\)"),
    (lambda x, y: plotting.plot_embedding(x.reshape(12, -1), y, method=None),
     r"points of 784 dimensions need a method \('tsne' or 'pca'\)"),
    (lambda x, y: plotting.plot_embedding(x[:, 0, :2], y + 5, method=None),
     r"class_names has 10 names, but labels needs 15 classes"),
])
def test_a_figure_of_what_it_cannot_draw_is_a_clear_error(rng, draw, message):
    """Labels past the class list, a list of the wrong length, flat inputs where images are
    drawn: a ValueError naming what was given and what is needed, before drawing."""
    x = rng.integers(0, 255, (12, 28, 28), dtype=np.uint8)
    y = np.arange(12) % 10
    with pytest.raises(ValueError, match=message):
        draw(x, y)


def test_saliency_of_one_channel_images_without_a_channel_axis_draws(rng):
    x = rng.random((3, 8, 8))
    fig = plotting.plot_saliency(x, x, y_true=np.array([0, 1, 2]), predicted=np.array([0, 1, 1]))
    assert len(fig.axes) == 6
