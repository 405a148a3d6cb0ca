"""What a new user meets first: progress output, warnings, error messages, figures, set-up."""

import io
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from minicnn import History, Sequential, plotting, validation
from minicnn.layers import Conv2D, Dense, Flatten
from minicnn.progress import Progbar, SlowStartNotice
from tests.helpers import ROOT


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_redraw_blanks_what_a_shorter_line_leaves():
    out = Terminal()
    bar = Progbar(10, verbose=1, stream=out)
    bar.update(1, {"loss": 123456.0})
    bar._last_draw = 0.0  # allow the next redraw at once
    bar.update(2, {"loss": 1.0})
    first, second = out.getvalue().split("\r")[1:]
    assert len(second) >= len(first)
    assert second.rstrip(" ").endswith("loss: 1.0000")


def test_eta_ignores_the_slow_first_step():
    bar = Progbar(100, verbose=1, stream=Terminal())
    bar.start -= 50.0  # the first step "took" 50 s (compiling)
    assert "ETA" not in bar._line(1, time.perf_counter())
    bar.update(1, {})
    now = bar._first_update[1] + 1.0  # then 1 s for 10 more steps
    eta = bar._line(11, now).split("ETA: ")[1]
    assert eta == "9s"  # 89 steps at 0.1 s, not at (50 + 1) / 11 s
    bar = Progbar(100, verbose=1, stream=Terminal())
    bar.update(41, {})  # a GPU's first read of the loss: 40 steps already run
    eta = bar._line(51, bar._first_update[1] + 1.0).split("ETA: ")[1]
    assert eta == "5s"  # 49 steps at 0.1 s (10 steps took 1 s)


def test_slow_start_notice_only_when_slow():
    out = io.StringIO()
    with SlowStartNotice("compiling ...", after=0.05, stream=out):
        time.sleep(0.3)
    assert out.getvalue() == "compiling ...\n"
    quiet = io.StringIO()
    with SlowStartNotice("compiling ...", after=5.0, stream=quiet):
        pass
    assert quiet.getvalue() == ""


def _dense_model(n_classes=3):
    model = Sequential([Flatten(input_shape=(4, 4, 1)), Dense(n_classes, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    return model


def test_plain_generator_without_steps_per_epoch_says_what_to_pass():
    def batches():
        while True:
            yield np.zeros((2, 4, 4, 1), np.float32), np.array([0, 1])

    with pytest.raises(ValueError, match="steps_per_epoch"):
        _dense_model().fit(batches(), epochs=1, verbose=0)
    history = _dense_model().fit(batches(), epochs=1, steps_per_epoch=3, verbose=0)
    assert len(history.history["loss"]) == 1


def test_one_hot_labels_with_the_sparse_loss_suggest_categorical():
    x = np.zeros((4, 4, 4, 1), np.float32)
    with pytest.raises(ValueError, match="categorical_crossentropy"):
        _dense_model().fit(x, np.eye(3)[[0, 1, 2, 0]], epochs=1, verbose=0)


@pytest.mark.parametrize("x", [
    np.full((4, 4, 4, 1), 200, np.uint8),
    np.full((4, 4, 4, 1), 255.0, np.float32),
])
def test_raw_pixels_warn_once(x, monkeypatch):
    monkeypatch.setattr(validation, "_warned_unscaled", False)
    model = _dense_model()
    with pytest.warns(UserWarning, match="to_float_images"):
        model.fit(x, np.array([0, 1, 2, 0]), epochs=1, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict(x)  # once per process is enough


def test_scaled_pixels_do_not_warn(monkeypatch):
    monkeypatch.setattr(validation, "_warned_unscaled", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _dense_model().fit(np.full((4, 4, 4, 1), 0.9, np.float32), np.array([0, 1, 2, 0]),
                           epochs=1, verbose=0)


# -- figures: each says what it shows ------------------------------------------------------


def _texts(fig):
    texts = [t.get_text() for ax in fig.axes for t in (ax.title, ax.xaxis.label, ax.yaxis.label)]
    texts += [t.get_text() for ax in fig.axes for t in ax.texts]
    if fig._suptitle is not None:
        texts.append(fig._suptitle.get_text())
    return texts


def test_history_names_its_held_out_curves_and_has_a_title():
    history = History()
    for epoch in range(3):
        history.append(epoch, {"loss": 1.0, "accuracy": 0.5, "val_loss": 1.1,
                               "val_accuracy": 0.4})
    fig = plotting.plot_history(history, val_name="test-set", title="cnn_b")
    labels = [line.get_label() for line in fig.axes[1].lines]
    assert labels == ["training accuracy", "test-set accuracy"]
    assert "cnn_b" in _texts(fig)


def test_confusion_matrix_title_gives_count_and_accuracy():
    fig = plotting.plot_confusion_matrix([0, 1, 1, 2], [0, 2, 1, 2], class_names=["a", "b", "c"])
    assert "Confusion matrix of 4 images\naccuracy 75.00%" in _texts(fig)


def test_sample_grid_marks_wrong_predictions_with_the_true_label():
    x = np.zeros((3, 4, 4))
    fig = plotting.plot_samples(x, [0, 1, 2], class_names=["a", "b", "c"], predicted=[0, 2, 2])
    titles = [ax.title for ax in fig.axes]
    assert titles[1].get_text() == "c\n(true: b)" and titles[1].get_color() == "red"
    assert titles[0].get_text() == "a" and titles[0].get_color() != "red"
    assert "wrong (1 of 3)" in fig._suptitle.get_text()


def test_filters_use_each_kernel_full_scale_with_a_colour_bar(rng):
    conv = Conv2D(4, 3)
    conv.build((8, 8, 1), rng)
    kernel = conv.get_weights()[0]
    kernel[..., 0, 1] *= 1e-3  # a tiny kernel is still visible
    fig = plotting.plot_filters(kernel, title="first layer")
    images = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    assert len(images) == 4
    for image in images:
        assert np.abs(image).max() == pytest.approx(1.0)
    assert any("largest |weight|" in ax.get_ylabel() for ax in fig.axes)  # the colour bar
    assert "first layer" in _texts(fig)


def test_prediction_bars_have_an_axis_label_and_a_legend():
    fig = plotting.plot_prediction(np.zeros((4, 4)), np.array([0.2, 0.8]), 0,
                                   class_names=["a", "b"])
    assert fig.axes[1].get_ylabel() == "predicted probability"
    legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert "true class" in legend


# -- set-up ---------------------------------------------------------------------------------


def test_run_script_is_the_readmes_entry_point():
    readme = (ROOT / "README.md").read_text()
    assert "./run examples/train_cnn.py" in readme and "./run -m pytest" in readme
    script = ROOT / "run"
    assert os.access(script, os.X_OK)
    assert ".venv/" in (ROOT / ".gitignore").read_text().split()


def test_run_script_reuses_an_installed_venv(tmp_path):
    """With the stamp matching the build inputs, ./run starts Python without reinstalling."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    env = {**os.environ, "MINICNN_VENV": str(venv)}
    probe = [str(ROOT / "run"), "-c", "print('hello from the venv')"]
    stamp_cmd = ("cat pyproject.toml setup.py minicnn/backends/cython/*.pyx "
                 "minicnn/backends/cython/*.pxi | cksum | cut -d' ' -f1")
    inputs = subprocess.run(["sh", "-c", stamp_cmd], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    version = subprocess.run(
        ["sh", "-c", f"'{sys.executable}' -c 'import sys; print(sys.version_info[:3])' | cksum "
                     "| cut -d' ' -f1"], capture_output=True, text=True, check=True).stdout.strip()
    (venv / ".minicnn-install-stamp").write_text(f"{inputs}-{version}\n")
    result = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello from the venv\n" and "installing" not in result.stderr


@pytest.mark.parametrize("command, models", [
    (["examples/train_cnn.py"], ["cnn_b"]),
    (["examples/train_cnn.py", "--epochs", "2", "--model", "best"], ["best"]),
    (["examples/train_cnn.py", "--model=mlp"], ["mlp"]),
    (["examples/train_cnn.py", "--model", "resnet"], ["resnet"]),
    (["examples/speedrun.py", "--seed", "3"], ["best"]),
    (["examples/xor.py"], []),
    (["-m", "pytest"], ["cnn_b", "best", "cnn_a", "small_data_cnn", "mlp", "resnet"]),
    ([], ["cnn_b", "best", "cnn_a", "small_data_cnn", "mlp", "resnet"]),
])
def test_the_first_run_compiles_what_its_command_trains(command, models):
    """./run's first call warms up (compiles and caches) the models of the command it is
    about to run only, so the main job waits for its own model's kernels, not the zoo's."""
    from minicnn import warmup, zoo
    assert warmup.models_for(command) == models
    assert set(warmup.ORDER) == set(zoo.MODELS)
    assert {m for ms in warmup.MODELS_OF_EXAMPLES.values() for m in ms} <= set(zoo.MODELS)
    assert set(warmup.MODELS_OF_EXAMPLES) <= {p.name for p in (ROOT / "examples").glob("*.py")}
