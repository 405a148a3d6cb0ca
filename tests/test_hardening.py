"""Hostile files, non-finite numbers and settings that must not be silently ignored."""

import gzip
import http.server
import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import minicnn
from minicnn import Sequential, datasets, load_model
from minicnn.datasets import DatasetError, load_fashion_mnist, read_idx
from minicnn.layers import Conv2D, Dense, Flatten, MaxPool2D
from minicnn.optimizers import SGD, Adam
from tests.test_datasets import fake_fashion_folder

ROOT = Path(__file__).resolve().parent.parent


def trained_model(optimizer="adam"):
    model = Sequential([Conv2D(2, (3, 3), activation="relu", input_shape=(6, 6, 1)),
                        MaxPool2D((2, 2)), Flatten(), Dense(3, activation="softmax")])
    model.compile(optimizer, "sparse_categorical_crossentropy", ["accuracy"])
    x = np.random.default_rng(0).random((8, 6, 6, 1)).astype(np.float32)
    model.fit(x, np.arange(8) % 3, batch_size=4, epochs=1, verbose=0, seed=0)
    return model


def read_npz(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def write_npz(path, arrays, config=None):
    if config is not None:
        arrays = {**arrays, "config": np.frombuffer(json.dumps(config).encode(), np.uint8)}
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def config_of(arrays):
    return json.loads(arrays["config"].tobytes())


# -- 1, 4, 5: crafted model files ------------------------------------------------------------


M_KEY = "optimizer/3/kernel/m"
DENSE_KERNEL = "weights/3/kernel"


def _with_array(key, value):
    return lambda plain, cfg: ({**plain, key: value(plain)}, cfg)


def _without(key):
    return lambda plain, cfg: ({k: v for k, v in plain.items() if k != key}, cfg)


def _with_config(**changes):
    return lambda plain, cfg: (plain, {**cfg, **changes})


def _with_layer(i, field="config", **changes):
    def mutate(plain, cfg):
        layers = [dict(spec) for spec in cfg["layers"]]
        layers[i][field] = ({**layers[i]["config"], **changes} if field == "config"
                            else changes["value"])
        return plain, {**cfg, "layers": layers}
    return mutate


# name -> mutation of a good file's (arrays, config): what a hostile or broken writer makes
MUTATIONS = {
    "short optimizer state": _with_array(M_KEY, lambda a: a[M_KEY].reshape(-1)[:-1]),
    "long optimizer state": _with_array(M_KEY, lambda a: np.tile(a[M_KEY].reshape(-1), 2)),
    "missing optimizer slot": _without(M_KEY),
    "missing weight": _without(DENSE_KERNEL),
    "extra array": _with_array("weights/9/kernel", lambda a: np.zeros(3, np.float32)),
    "wrong shape": _with_array(DENSE_KERNEL, lambda a: np.zeros((3, 3), np.float32)),
    "int weights": _with_array(DENSE_KERNEL, lambda a: a[DENSE_KERNEL].astype(np.int64)),
    "float16 weights": _with_array(DENSE_KERNEL, lambda a: a[DENSE_KERNEL].astype(np.float16)),
    "nan weights": _with_array(DENSE_KERNEL, lambda a: np.full_like(a[DENSE_KERNEL], np.nan)),
    "huge float64 weights": _with_array(DENSE_KERNEL,
                                        lambda a: np.full(a[DENSE_KERNEL].shape, 1e300)),
    "config is a list": lambda plain, cfg: (plain, [cfg]),
    "config is a number": lambda plain, cfg: (plain, 3),
    "negative iterations": _with_config(optimizer_iterations=-1),
    "string iterations": _with_config(optimizer_iterations="3"),
    "float iterations": _with_config(optimizer_iterations=2.5),
    "future format": _with_config(format_version=2),
    "unknown layer class": _with_config(layers=[{"class": "Lambda", "config": {}}]),
    "unknown layer option": _with_layer(0, dilation_rate=2),
    "lying dense width": _with_layer(3, units=100_000),
    "lying conv filters": _with_layer(0, filters=50_000),
    "lying input shape": _with_layer(0, input_shape=[60_000, 60_000, 1]),
    "trainable not a bool": _with_layer(0, field="trainable", value="yes"),
    "unknown optimizer": _with_config(optimizer={"name": "adagrad"}),
    "bad learning rate": _with_config(optimizer={"name": "adam", "learning_rate": -1}),
    "metrics not a list": _with_config(metrics="accuracy"),
    "no layers": _with_config(layers=[]),
}


def mutated(saved, name):
    arrays = read_npz(saved)
    plain = {k: v for k, v in arrays.items() if k != "config"}
    return MUTATIONS[name](plain, config_of(arrays))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "good.npz"
    trained_model().save(path)
    return path


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_crafted_model_file_is_a_clear_error(saved, tmp_path, name):
    arrays, cfg = mutated(saved, name)
    path = tmp_path / "crafted.npz"
    write_npz(path, arrays, cfg)
    start = time.perf_counter()
    with pytest.raises(ValueError, match="cannot load model from .*crafted.npz"):
        load_model(path)
    assert time.perf_counter() - start < 5  # nothing huge was allocated


def test_zip_member_that_inflates_past_its_header_is_refused(saved, tmp_path):
    """A deflated member whose size disagrees with its .npy header is never read in full."""
    import zipfile
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "weights/3/kernel.npy":
                data += b"\0" * 50_000_000  # 50 MB of zeros, ~50 KB compressed
            dst.writestr(info.filename, data)
    with pytest.raises(ValueError, match="size does not match"):
        load_model(path)


def test_good_file_still_loads_and_trains(saved):
    model = load_model(saved)
    assert model.optimizer.iterations == 2
    x = np.random.default_rng(1).random((4, 6, 6, 1)).astype(np.float32)
    model.fit(x, np.arange(4) % 3, epochs=1, verbose=0)


FUZZ_SCRIPT = """
import json, sys, warnings
import numpy as np
import minicnn
from minicnn import load_model
warnings.simplefilter("ignore")
x = np.random.default_rng(0).random((4, 6, 6, 1)).astype(np.float32)
y = np.array([0, 1, 2, 0])
for path in sys.argv[1:]:
    try:
        model = load_model(path)
    except ValueError as exc:
        outcome = "named error" if path in str(exc) else "unnamed error: " + str(exc)
    else:
        outcome = "loaded"
        for backend in minicnn.available_backends():
            if backend == "cuda":
                continue
            with minicnn.use_backend(backend):
                if model.loss is not None:
                    model.fit(x, y, batch_size=2, epochs=1, verbose=0)
                model.predict(x)
        if not all(np.isfinite(w).all() for w in model.get_weights()):
            outcome = "loaded non-finite weights"
    print(json.dumps([path, outcome]), flush=True)
"""


def _fuzzed_files(saved, folder, count, seed):
    """Copies of a good file with a few random bytes overwritten, and other mutations."""
    rng = np.random.default_rng(seed)
    good = saved.read_bytes()
    paths = []
    for i in range(count):
        data = bytearray(good)
        for pos in rng.integers(0, len(data), rng.integers(1, 8)):
            data[pos] = rng.integers(0, 256)
        path = folder / f"flipped-{i}.npz"
        path.write_bytes(bytes(data))
        paths.append(path)
    for i, name in enumerate(MUTATIONS):
        path = folder / f"mutated-{i}.npz"
        write_npz(path, *mutated(saved, name))
        paths.append(path)
    return paths


def test_fuzzed_model_files_never_crash_a_process(saved, tmp_path):
    """Each load-and-train runs in a child process: a segfault or hang fails this test."""
    paths = _fuzzed_files(saved, tmp_path, count=40, seed=7)
    result = subprocess.run([sys.executable, "-c", FUZZ_SCRIPT, *map(str, paths)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    outcomes = dict(json.loads(line) for line in result.stdout.splitlines())
    assert len(outcomes) == len(paths)
    bad = {p: o for p, o in outcomes.items() if o not in ("named error", "loaded")}
    assert not bad, bad
    mutated = [o for p, o in outcomes.items() if "mutated" in p]
    assert set(mutated) == {"named error"}


def test_compiled_kernels_check_shapes_in_their_wrappers():
    for name in minicnn.available_backends():
        if name == "cuda":
            continue
        with minicnn.use_backend(name) as backend:
            p, g = np.zeros(10, np.float32), np.zeros(10, np.float32)
            with pytest.raises(ValueError, match="shape"):
                backend.adam_update(p, g, np.zeros(9, np.float32), np.zeros(10, np.float32),
                                    0.1, 0.9, 0.999, 1e-7)
            with pytest.raises(ValueError, match="shape"):
                backend.sgd_update(p, g, np.zeros(11, np.float32), 0.1, 0.9)


# -- 2, 3: non-finite numbers ---------------------------------------------------------------


def test_fit_stops_on_a_non_finite_loss_and_keeps_history_and_weights():
    model = Sequential([Dense(3, activation="softmax", input_shape=(2,))])
    model.compile(SGD(1e35), "sparse_categorical_crossentropy", ["accuracy"])
    x = np.array([[1e3, -1e3], [-1e3, 1e3], [5.0, 5.0]] * 4, np.float32)
    y = np.array([0, 1, 2] * 4)
    with pytest.warns(RuntimeWarning, match="fit stopped at epoch"), np.errstate(all="ignore"):
        history = model.fit(x, y, batch_size=3, epochs=5, verbose=0, seed=0)
    assert 1 <= len(history.history["loss"]) < 5
    assert not np.isfinite(history.history["loss"][-1])
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_save_refuses_non_finite_weights_and_keeps_the_old_file(tmp_path):
    model = trained_model()
    path = tmp_path / "m.npz"
    model.save(path)
    before = path.read_bytes()
    model.layers[-1].params["kernel"][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        model.save(path)
    assert path.read_bytes() == before


def test_finiteness_is_checked_after_the_cast_to_floatx():
    model = Sequential([Dense(2, input_shape=(3,))])
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="NaN or inf"):
        model.fit(np.full((2, 3), 1e300), np.zeros((2, 2)), verbose=0)
    model.build(seed=0)
    kernel, bias = model.get_weights()
    with pytest.raises(ValueError, match="NaN or inf"):
        model.set_weights([np.full(kernel.shape, 1e300), bias])


# -- 4, 5: data files --------------------------------------------------------------------------


def test_idx_header_promising_too_much_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge-idx"
    path.write_bytes(b"\x00\x00\x08\x03" + b"\xff\xff\xff\xff" * 3)
    with pytest.raises(DatasetError, match="huge-idx.*more than"):
        read_idx(path)


def test_gzip_bomb_is_not_inflated_past_the_known_size(tmp_path, monkeypatch):
    _, table = fake_fashion_folder(tmp_path / "data")
    monkeypatch.setattr(datasets, "FILES", table)
    bomb = tmp_path / "data" / "train-labels-idx1-ubyte.gz"
    bomb.write_bytes(gzip.compress(b"\0" * 200_000_000, compresslevel=1))
    start = time.perf_counter()
    with pytest.raises(DatasetError, match="train-labels.*more than"):
        load_fashion_mnist(tmp_path / "data")
    assert time.perf_counter() - start < 2  # stopped after a few bytes, not 200 MB


def test_corrupt_deflate_block_is_a_dataset_error(tmp_path):
    data = bytearray(gzip.compress(np.arange(5000, dtype=np.uint8).tobytes()))
    data[30:40] = b"\xff" * 10
    path = tmp_path / "bad.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="bad.gz"):
        read_idx(path)


# -- 6: data lookup -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_minicnn_data_that_is_not_a_folder_is_an_error(tmp_path, monkeypatch, kind):
    target = tmp_path / "nowhere"
    if kind == "file":
        target.write_text("x")
    monkeypatch.setenv("MINICNN_DATA", str(target))
    with pytest.raises(DatasetError, match="MINICNN_DATA"):
        load_fashion_mnist()


def test_a_trickling_download_gives_up_at_the_deadline(tmp_path, monkeypatch):
    class Trickle(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            for _ in range(200):
                try:
                    self.wfile.write(b"\x1f")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.05)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(datasets, "MIRRORS", (f"http://127.0.0.1:{server.server_port}/",))
        monkeypatch.setattr(datasets, "DOWNLOAD_DEADLINE", 0.5)
        monkeypatch.setattr(datasets.sys, "stderr", open(os.devnull, "w"))
        start = time.perf_counter()
        with pytest.raises(DatasetError, match="gave up after"):
            datasets._download("t10k-labels-idx1-ubyte", tmp_path)
        assert time.perf_counter() - start < 5
        assert list(tmp_path.iterdir()) == []  # no partial file left
    finally:
        server.shutdown()


# -- 7: saves -------------------------------------------------------------------------------------


def test_save_removes_temporaries_of_dead_saves_by_age_not_pid(tmp_path):
    """A temporary untouched for over an hour is a dead save's; a fresh one may be a live
    writer's in another PID namespace (whose pid looks dead from here): kept."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / f".m.npz.{dead}.abc123.minicnn-tmp"
    stale.write_bytes(b"x" * 1000)
    hours_ago = time.time() - 7200
    os.utime(stale, (hours_ago, hours_ago))
    live = tmp_path / f".m.npz.{dead}.def456.minicnn-tmp"  # fresh: another writer's
    live.write_bytes(b"x")
    other = tmp_path / f".other.npz.{dead}.abc123.minicnn-tmp"  # another target's: kept
    other.write_bytes(b"x")
    os.utime(other, (hours_ago, hours_ago))
    trained_model().save(tmp_path / "m.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([other.name, live.name,
                                                                 "m.npz"])


def test_save_keeps_the_mode_of_an_existing_file_and_umask_for_new_ones(tmp_path):
    model = trained_model()
    path = tmp_path / "m.npz"
    old_umask = os.umask(0o022)
    try:
        model.save(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        path.chmod(0o640)
        model.save(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    finally:
        os.umask(old_umask)


def test_save_writes_through_a_symlink(tmp_path):
    target = tmp_path / "real" / "m.npz"
    target.parent.mkdir()
    link = tmp_path / "link.npz"
    link.symlink_to(target)
    trained_model().save(link)
    assert link.is_symlink() and target.is_file()
    load_model(link)


@pytest.mark.parametrize("name", ["m.keras", "m.h5", "m"])
def test_save_refuses_names_that_promise_another_format(tmp_path, name):
    with pytest.raises(ValueError, match=r"\.npz"):
        trained_model().save(tmp_path / name)
    assert list(tmp_path.iterdir()) == []


# -- 8: settings that were ignored ----------------------------------------------------------------


def test_trainable_false_freezes_a_layer_and_summary_counts_it(tmp_path, capsys):
    model = trained_model()
    model.layers[0].trainable = False
    frozen = model.layers[0].get_weights()
    moving = model.layers[-1].get_weights()
    x = np.random.default_rng(2).random((8, 6, 6, 1)).astype(np.float32)
    model.fit(x, np.arange(8) % 3, batch_size=4, epochs=1, verbose=0)
    for a, b in zip(frozen, model.layers[0].get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(moving[0], model.layers[-1].get_weights()[0])
    model.summary()
    out = capsys.readouterr().out
    assert "Trainable params: 27" in out and "Non-trainable params: 20" in out
    model.save(tmp_path / "m.npz")
    assert load_model(tmp_path / "m.npz").layers[0].trainable is False


def test_validation_split_with_a_flow_is_an_error():
    from minicnn.augment import ImageDataGenerator
    x = np.zeros((8, 6, 6, 1), np.float32)
    flow = ImageDataGenerator().flow(x, np.arange(8) % 3, batch_size=4)
    with pytest.raises(ValueError, match="validation_split"):
        trained_model().fit(flow, epochs=1, validation_split=0.2, verbose=0)


def test_metrics_as_one_string():
    model = Sequential([Dense(2, activation="softmax", input_shape=(3,))])
    model.compile("adam", "sparse_categorical_crossentropy", metrics="accuracy")
    assert model.metrics == ["accuracy"]


def test_numpy_scalars_are_accepted_as_hyperparameters():
    opt = Adam(learning_rate=np.float32(0.01), beta_1=np.float64(0.8))
    assert opt.learning_rate == pytest.approx(0.01) and opt.beta_1 == 0.8
    assert SGD(np.float32(0.1), momentum=np.float32(0.5)).momentum == 0.5
    with pytest.raises(ValueError):
        Adam(learning_rate=True)


def test_one_optimizer_cannot_train_two_models():
    opt = Adam()
    first = Sequential([Dense(2, input_shape=(3,))], name="first")
    first.compile(opt, "mse")
    first.compile(opt, "mse")  # recompiling the same model is fine
    with pytest.raises(ValueError, match="already trains model 'first'"):
        Sequential([Dense(2, input_shape=(3,))]).compile(opt, "mse")


def test_set_floatx_after_build_converts_the_model():
    model = trained_model()
    x = np.random.default_rng(3).random((4, 6, 6, 1))
    try:
        minicnn.set_floatx("float64")
        model.fit(x, np.arange(4) % 3, epochs=1, verbose=0)
        assert model.get_weights()[0].dtype == np.float64
        assert model.predict(x).dtype == np.float64
    finally:
        minicnn.set_floatx("float32")
    assert model.predict(x).dtype == np.float32


def test_numba_without_a_writable_cache_compiles_in_memory(monkeypatch):
    if "numba" not in minicnn.available_backends():
        pytest.skip("numba is not installed")
    from minicnn.backends.numba import jit

    def no_locator(*args, **kwargs):
        raise RuntimeError("cannot cache function '_cache_probe': no locator available")

    monkeypatch.setattr(jit, "njit", no_locator)
    with pytest.warns(RuntimeWarning, match="compiled in memory"):
        assert jit._caching_works() is False


def test_a_backend_that_fails_to_load_reports_the_real_error(monkeypatch):
    from minicnn import backends

    monkeypatch.setitem(backends._REGISTRY, "broken", ("tests.no_such_module", "Broken", "remedy"))
    with pytest.raises(RuntimeError, match="not available here.*no_such_module"):
        backends.load("broken")

    def boom(path):
        raise RuntimeError("cannot cache function 'f': no locator available")

    monkeypatch.setattr(backends.importlib, "import_module", boom)
    with pytest.raises(RuntimeError, match="installed but failed to load.*no locator"):
        backends.load("broken")


# -- 9: threads ------------------------------------------------------------------------------


def test_use_backend_in_one_thread_leaves_the_others_alone():
    inside, seen = threading.Event(), []
    release = threading.Event()

    def switcher():
        with minicnn.use_backend("numpy"):
            inside.set()
            release.wait(5)

    minicnn.set_backend(minicnn.available_backends()[-1])
    main_backend = minicnn.get_backend().name
    thread = threading.Thread(target=switcher)
    thread.start()
    inside.wait(5)
    seen.append(minicnn.get_backend().name)
    release.set()
    thread.join()
    assert seen == [main_backend]


def test_set_backend_inside_use_backend_applies_there_and_after():
    names = minicnn.available_backends()
    with minicnn.use_backend("numpy"):
        minicnn.set_backend(names[-1])
        assert minicnn.get_backend().name == names[-1]
    assert minicnn.get_backend().name == names[-1]


# -- round 2: every file save writes loads --------------------------------------------------


def _small(**dense):
    return Sequential([Dense(3, activation="relu", input_shape=(4,), **dense),
                       Dense(2, activation="softmax")])


def test_numpy_scalars_in_layer_configs_save_and_load(tmp_path):
    from minicnn.layers import Dropout
    from minicnn.regularizers import L1L2
    model = Sequential([Dense(3, input_shape=(4,), kernel_regularizer=L1L2(np.float32(0.01))),
                        Dropout(np.float64(0.2), seed=np.int64(3)), Dense(2)])
    model.layers[0].trainable = np.bool_(True)
    model.save(tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    assert loaded.layers[1].seed == 3 and loaded.layers[0].trainable is True


@pytest.mark.parametrize("spoil, message", [
    (lambda m: setattr(m, "name", None), "name must be a string"),
    (lambda m: setattr(m.layers[0], "trainable", "no"), "bad layer entry"),
])
def test_a_config_that_would_not_load_is_refused_before_writing(tmp_path, spoil, message):
    model = _small()
    spoil(model)
    path = tmp_path / "m.npz"
    with pytest.raises(ValueError, match=f"would not load back.*{message}.*nothing was written"):
        model.save(path)
    assert list(tmp_path.iterdir()) == []


def test_a_schedule_minicnn_cannot_rebuild_is_refused_at_save(tmp_path):
    from minicnn.optimizers import Adam, LearningRateSchedule

    class Halving(LearningRateSchedule):
        def __call__(self, step):
            return 0.01 / 2 ** step

    model = _small()
    model.compile(Adam(Halving()), "sparse_categorical_crossentropy")
    path = tmp_path / "m.npz"
    path.write_bytes(b"the user's old file")
    with pytest.raises(ValueError, match="would not load back"):
        model.save(path)
    assert path.read_bytes() == b"the user's old file"


def test_build_after_fit_changes_nothing_and_takes_keras_input_shapes():
    model = _small()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(np.ones((4, 4)), np.array([0, 1, 0, 1]), epochs=1, verbose=0, seed=0)
    trained = model.get_weights()
    model.build()
    model.build((None, 4))
    for a, b in zip(trained, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    fresh = Sequential([Dense(3), Dense(2)])
    fresh.build((None, 5), seed=0)
    assert fresh.layers[0].get_weights()[0].shape == (5, 3)
    for bad in (0, (4,), (None, 4.7), (None, 0)):
        with pytest.raises(ValueError, match="build takes the input shape"):
            Sequential([Dense(3)]).build(bad)
    with pytest.raises(ValueError, match="disagrees"):
        _small().build((None, 5))


# -- round 2: hyper-parameters, schedules and Keras' edges ---------------------------------


@pytest.mark.parametrize("make", [
    lambda: SGD(1e39), lambda: Adam(epsilon=1e-50),
    lambda: minicnn.optimizers.RMSprop(epsilon=1e-50)])
def test_hyper_parameters_float32_cannot_carry_are_refused(make):
    with pytest.raises(ValueError, match="cannot be carried in float32"):
        make()


def test_a_schedule_value_that_is_not_a_learning_rate_stops_before_the_update():
    from minicnn.optimizers import ExponentialDecay, LearningRateSchedule

    class Broken(LearningRateSchedule):
        def __call__(self, step):
            return float("nan") if step >= 2 else 0.01

    for schedule in (ExponentialDecay(0.1, 1, 10.0), Broken()):
        model = _small()
        model.compile(SGD(schedule), "sparse_categorical_crossentropy")
        x, y = np.ones((64, 4)), np.arange(64) % 2
        with pytest.raises(ValueError, match="learning-rate schedule .* gave"):
            model.fit(x, y, batch_size=1, epochs=1, verbose=0, seed=0)
        assert all(np.isfinite(w).all() for w in model.get_weights())


def test_learning_rate_callbacks_refuse_a_schedule_and_take_one_argument_functions():
    from minicnn.callbacks import LearningRateScheduler, ReduceLROnPlateau
    from minicnn.optimizers import CosineDecay
    x, y = np.ones((8, 4)), np.arange(8) % 2
    for callback in (LearningRateScheduler(lambda epoch, lr: lr), ReduceLROnPlateau("loss")):
        model = _small()
        model.compile(Adam(CosineDecay(1e-3, 100)), "sparse_categorical_crossentropy")
        with pytest.raises(TypeError, match="is a schedule"):
            model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
        assert isinstance(model.optimizer.learning_rate, CosineDecay)
    model = _small()
    model.compile(SGD(0.1), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, verbose=0, callbacks=[LearningRateScheduler(lambda e: 0.5 / (e + 1))])
    assert model.optimizer.learning_rate == 0.25


def test_regularizer_instances_are_validated_like_names():
    from minicnn.regularizers import L1L2
    for bad in (L1L2(-1.0, 0.0), L1L2("x", 0.0), L1L2(float("nan"), 0.0)):
        with pytest.raises(ValueError, match="regularizer factors"):
            Dense(3, kernel_regularizer=bad)


def test_input_shapes_must_be_positive_ints_and_agree():
    from minicnn.layers import Input
    for bad in ((4.7,), (0, 3), "28", (True,)):
        with pytest.raises(ValueError, match="shape of one sample as positive ints"):
            Dense(3, input_shape=bad)
    with pytest.raises(ValueError, match="disagree; give only one"):
        Sequential([Input((4,)), Dense(3, input_shape=(5,))])
    assert Sequential([Input((4,)), Dense(3, input_shape=(4,))]).input_shape == (4,)


def test_to_float_images_scales_pixels_once():
    from minicnn.datasets import to_float_images
    pixels = np.array([[0, 255]], dtype=np.uint8)
    once = to_float_images(pixels)
    np.testing.assert_array_equal(to_float_images(once[..., 0]), once)
    np.testing.assert_array_equal(to_float_images(pixels.astype(float)), once)


def test_an_unbuilt_layer_has_no_weights_and_one_layer_cannot_stand_twice():
    assert Dense(3).get_weights() == []
    dense = Dense(3, input_shape=(4,))
    with pytest.raises(ValueError, match="already in this model"):
        Sequential([dense, dense])
    first = Sequential([Dense(2, input_shape=(4,)), Dense(2)])
    shared = first.layers[1]
    assert shared.name == "dense_1"
    with pytest.raises(ValueError, match="belongs to another model"):
        Sequential([Dense(2, input_shape=(4,), name="dense_1"), shared])
    assert shared.name == "dense_1"


def test_generators_honour_sample_weights_and_may_end_early():
    x, y = np.ones((8, 4)), np.arange(8) % 2

    def weighted(w):
        while True:
            yield x, y, w

    model = _small()
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.build(seed=0)
    start = model.get_weights()
    model.fit(weighted(np.zeros(8)), steps_per_epoch=2, epochs=1, verbose=0)
    for a, b in zip(start, model.get_weights()):  # zero weights: zero loss, no change
        np.testing.assert_array_equal(a, b)

    def three_batches():
        for _ in range(3):
            yield x, y

    with pytest.warns(RuntimeWarning, match="ran out of data"):
        history = model.fit(three_batches(), steps_per_epoch=2, epochs=3, verbose=0)
    assert len(history.history["loss"]) == 2  # epoch 2 had one step; epoch 3 none
    with pytest.raises(ValueError, match="steps_per_epoch is for generators"):
        model.fit(x, y, steps_per_epoch=3, verbose=0)


def test_a_second_thread_cannot_enter_a_running_model():
    model = _small()
    model.compile("sgd", "sparse_categorical_crossentropy")
    started, errors = threading.Event(), []

    class Pause(minicnn.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            started.set()
            thread.join()

    def predict_meanwhile():
        started.wait()
        try:
            model.predict(np.ones((2, 4)))
        except RuntimeError as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=predict_meanwhile)
    thread.start()
    model.fit(np.ones((4, 4)), np.array([0, 1, 0, 1]), epochs=1, verbose=0,
              callbacks=[Pause()])
    assert errors and "another thread" in errors[0]
    assert model.predict(np.ones((2, 4))).shape == (2, 2)  # free again afterwards


# -- round 2: every error a user can cause names it -----------------------------------------


def _fitted_small():
    model = _small()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    return model


_X, _Y = np.ones((6, 4)), np.arange(6) % 2


@pytest.mark.parametrize("call, error, message", [
    (lambda: _fitted_small().fit(_X, _Y, validation_split="0.2", verbose=0), ValueError,
     "validation_split must be in"),
    (lambda: _fitted_small().fit(_X, _Y, seed=-1, verbose=0), ValueError, "seed must be"),
    (lambda: _fitted_small().fit(_X, _Y, seed=1.5, verbose=0), ValueError, "seed must be"),
    (lambda: _fitted_small().fit(_X, _Y, class_weight={1: "heavy"}, verbose=0), ValueError,
     "class_weight entry 1: 'heavy'"),
    (lambda: _fitted_small().fit(_X, _Y, class_weight={"1": 2.0}, verbose=0), ValueError,
     "class_weight entry '1'"),
    (lambda: _fitted_small().fit([[1, 2, 3, 4], [1, 2]], [0, 1], verbose=0), ValueError,
     "x is ragged"),
    (lambda: Sequential().summary(), ValueError, "has no layers yet"),
    (lambda: _small().get_layer(index=5), ValueError, r"get_layer\(index=5\): the model has 2"),
    (lambda: _small().compile("adam", ["mse"]), ValueError, "one output, so one loss"),
    (lambda: _small().set_weights(["a", "b", "c", "d"]), ValueError, "array of real numbers"),
    (lambda: _fitted_small().fit(_X, _Y, verbose=0, callbacks=minicnn.callbacks.EarlyStopping()),
     TypeError,
     "callbacks must be a list"),
    (lambda: minicnn.augment.ImageDataGenerator(height_shift_range=float("nan")), ValueError,
     "shift range must be a finite, non-negative number"),
    (lambda: minicnn.augment.ImageDataGenerator().flow(np.zeros((2, 4, 4, 1)), np.zeros(2),
                                                       seed=-3), ValueError, "seed must be"),
    (lambda: load_model("/dev/zero"), ValueError, "not a regular file"),
])
def test_errors_name_what_was_wrong(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_model_files_by_bytes_path_fifo_and_folder(tmp_path):
    model = _small()
    model.save(os.fsencode(tmp_path / "m.npz"))
    assert load_model(tmp_path / "m.npz").layers[0].units == 3
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    for path in (fifo, tmp_path):
        with pytest.raises(ValueError, match="not a regular file"):
            load_model(path)  # refused at once: reading a pipe would wait for ever


def test_model_checkpoint_checks_its_names_and_makes_its_folder(tmp_path):
    from minicnn.callbacks import CSVLogger, ModelCheckpoint
    with pytest.raises(ValueError, match="no validation data"):
        _fitted_small().fit(_X, _Y, verbose=0,
                            callbacks=[ModelCheckpoint(str(tmp_path / "ck-{val_loss:.2f}.npz"))])
    assert list(tmp_path.iterdir()) == []
    path = tmp_path / "new" / "folder" / "ck-{epoch}.npz"
    _fitted_small().fit(_X, _Y, epochs=2, verbose=0, callbacks=[ModelCheckpoint(str(path))])
    assert sorted(p.name for p in (tmp_path / "new" / "folder").iterdir()) == [
        "ck-1.npz", "ck-2.npz"]

    class LateKey(minicnn.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch:
                logs["late"] = 1.0

    csv_path = tmp_path / "log.csv"
    with pytest.warns(RuntimeWarning, match=r"\['late'\] appeared after the first epoch"):
        _fitted_small().fit(_X, _Y, epochs=2, verbose=0,
                            callbacks=[LateKey(), CSVLogger(str(csv_path))])
    assert len(csv_path.read_text().splitlines()) == 3


def test_a_bad_thread_count_names_the_variable(monkeypatch):
    from minicnn.backends.threads import cpu_threads
    monkeypatch.setenv("MINICNN_NUM_THREADS", "abc")
    with pytest.raises(ValueError, match="MINICNN_NUM_THREADS must be a whole number"):
        cpu_threads()


def test_compute_gradients_builds_an_unbuilt_model():
    model = _small()
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = model.check_data(_X, _Y)
    assert np.isfinite(model.compute_gradients(x, y))
    assert model.layers[0].grads["kernel"].shape == (4, 3)


def test_history_stays_aligned_after_a_diverged_epoch():
    model = _small()
    model.compile(SGD(0.1), "sparse_categorical_crossentropy", ["accuracy"])
    x = np.ones((6, 4))
    x[0, 0] = 1e30  # its loss overflows: the first epoch diverges
    history = model.fit(x, _Y, epochs=2, verbose=0, terminate_on_nan=False,
                        validation_data=(np.ones((2, 4)), np.array([0, 1])))
    lengths = {key: len(values) for key, values in history.history.items()}
    assert set(lengths.values()) == {2}, lengths


def test_early_stopping_keeps_the_best_epoch_below_the_baseline_as_keras_3():
    from minicnn.callbacks import Callback, EarlyStopping
    losses = iter([0.9, 0.5, 0.7, 0.8])

    class Scripted(Callback):  # fakes the monitored value before EarlyStopping reads it
        def on_epoch_end(self, epoch, logs=None):
            logs["scripted"] = next(losses)

    model = _fitted_small()
    stop = EarlyStopping("scripted", mode="min", patience=2, baseline=0.1,
                         restore_best_weights=True)
    saved = []

    class Keep(Callback):
        def on_epoch_end(self, epoch, logs=None):
            saved.append(self.model.get_weights())

    history = model.fit(_X, _Y, epochs=4, verbose=0, callbacks=[Scripted(), stop, Keep()])
    assert len(history.history["loss"]) == 3  # never beats the baseline: patience runs out
    assert stop.best == 0.5 and stop.best_epoch == 1
    for a, b in zip(model.get_weights(), saved[1]):
        np.testing.assert_array_equal(a, b)


def test_accuracy_with_binary_cross_entropy_over_several_outputs_is_binary_accuracy(backend):
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((12, 4)), (rng.random((12, 3)) > 0.5).astype(float)
    model = Sequential([Dense(3, activation="sigmoid", input_shape=(4,))])
    model.compile("sgd", "binary_crossentropy", ["accuracy"])
    model.build(seed=0)
    _, accuracy = model.evaluate(x, y)
    expected = np.mean((model.predict(x) > 0.5) == (y > 0.5))
    assert accuracy == pytest.approx(expected)
    assert accuracy != pytest.approx(np.mean(model.predict(x).argmax(1) == y.argmax(1)))


def test_saving_over_a_read_only_file_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    path.write_bytes(b"the user's old file")
    path.chmod(0o444)
    real_access = os.access
    # as root every file is writable: pretend to be a user that may not write this one
    monkeypatch.setattr(os, "access", lambda p, mode: False if os.fspath(p) == str(path)
                        else real_access(p, mode))
    with pytest.raises(PermissionError, match="read-only"):
        _small().save(path)
    assert path.read_bytes() == b"the user's old file"


def test_sparse_labels_with_many_classes_never_become_one_n_by_k_array():
    """100,000 classes: the one-hot rows are made per batch, not for the whole data set
    (2,000 x 100,000 float32 one-hot rows would be 800 MB)."""
    import tracemalloc

    model = Sequential([Dense(100_000, activation="softmax", input_shape=(4,))])
    model.compile("sgd", "sparse_categorical_crossentropy", ["accuracy"])
    rng = np.random.default_rng(0)
    x, y = rng.random((2000, 4)), rng.integers(0, 100_000, 2000)
    y[:5] = 99_999  # the last class
    tracemalloc.start()
    try:
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, class_weight={99_999: 2.0})
        loss, accuracy = model.evaluate(x, y, batch_size=32)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200e6, f"peak {peak / 1e6:.0f} MB"
    assert np.isfinite(loss) and 0 <= accuracy <= 1
    # the same loss as one-hot targets with categorical cross-entropy
    sparse_loss = model.evaluate(x[:32], y[:32])[0]
    model.compile(SGD(), "categorical_crossentropy", ["accuracy"])
    one_hot = np.zeros((32, 100_000))
    one_hot[np.arange(32), y[:32]] = 1
    assert np.isclose(model.evaluate(x[:32], one_hot)[0], sparse_loss, rtol=1e-5)


@pytest.mark.parametrize("backend", ["numpy", "numba", "cython"])
@pytest.mark.parametrize("make", [lambda: SGD(1e10), lambda: SGD(1e10, momentum=0.5),
                                  lambda: minicnn.optimizers.RMSprop(1e38),
                                  lambda: minicnn.optimizers.AdamW(1e38, weight_decay=1e3)])
def test_an_update_that_overflows_never_leaves_nan_or_inf_in_the_weights(backend, make):
    """A finite loss, but a step past float32's largest number (a huge L2 penalty's gradient
    times the learning rate): fit stops, says so, and every weight and optimizer value is
    still finite."""
    from minicnn.regularizers import L2
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 4)), np.arange(8) % 3
    with minicnn.use_backend(backend):
        model = Sequential([Dense(3, activation="softmax", input_shape=(4,),
                                  kernel_regularizer=L2(1e30))])
        model.compile(make(), "sparse_categorical_crossentropy")
        with pytest.warns(RuntimeWarning, match=r"update would have made weights .* NaN or inf"):
            history = model.fit(x, y, batch_size=2, epochs=3, verbose=0, seed=0)
        assert np.isfinite(history.history["loss"]).all()
        assert all(np.isfinite(w).all() for w in model.get_weights())
        assert all(np.isfinite(a).all() for a in model.optimizer.state_arrays().values())
        assert model.optimizer.iterations == 1  # the step that broke off, applied in part
        # carrying on past it (terminate_on_nan=False) keeps them finite too
        model.fit(x, y, batch_size=2, epochs=2, verbose=0, terminate_on_nan=False)
        assert all(np.isfinite(w).all() for w in model.get_weights())


def _mlp(input_shape=(4,)):
    """The audit's m: Dense(8, relu) -> Dense(3, softmax)."""
    return Sequential([Dense(8, activation="relu", input_shape=input_shape),
                       Dense(3, activation="softmax")])


def test_a_model_that_knows_its_input_shape_is_built_at_construction_as_in_keras():
    from minicnn.layers import Input
    for model in (_mlp(), Sequential([Input((4,)), Dense(8, activation="relu"), Dense(3)])):
        assert model.built
        kernel, bias = model.layers[0].get_weights()
        assert kernel.shape == (4, 8) and bias.shape == (8,)
        model.add(Dense(2))  # added later: built too, as Keras' add does
        assert model.layers[-1].get_weights()[0].shape == (3, 2)
    assert Sequential([Dense(3)]).layers[0].get_weights() == []  # no input shape: not yet
    model = _mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = np.random.default_rng(0).standard_normal((8, 4)), np.arange(8) % 3
    assert np.isfinite(model.compute_gradients(x, y))


def test_a_seed_redraws_weights_still_as_construction_drew_them_and_nothing_else():
    """fit(seed=s) and build(seed=s) give the weights a model built late gets from s; weights
    set or trained since construction are never redrawn."""
    x, y = np.random.default_rng(0).standard_normal((16, 4)), np.arange(16) % 3

    def trained(model, **fit):
        model.compile(SGD(0.1), "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=1, verbose=0, **fit)
        return model.get_weights()

    late = Sequential()
    for layer in _mlp(input_shape=None).layers:
        late.add(layer, rebuild=False)
    late.layers[0].input_shape = (4,)
    assert not late.built
    for got, want in zip(trained(_mlp(), seed=0), trained(late, seed=0)):
        np.testing.assert_array_equal(got, want)
    early, late = _mlp(), _mlp(input_shape=None)
    early.build(seed=3)
    late.build((None, 4), seed=3)
    for got, want in zip(early.get_weights(), late.get_weights()):
        np.testing.assert_array_equal(got, want)
    chosen = [np.full_like(w, 0.25) for w in _mlp().layers[0].get_weights()]
    for setter in ("model", "layer"):
        model = _mlp()
        if setter == "model":
            model.set_weights(chosen + model.get_weights()[2:])
        else:
            model.layers[0].set_weights(chosen)
        model.compile(SGD(1e-30), "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=1, verbose=0, seed=0)  # no redraw: what was set stays
        np.testing.assert_allclose(model.layers[0].get_weights()[0], 0.25)
    model = _mlp()
    before = trained(model, seed=1)
    model.build(seed=2)  # trained: a no-op
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)
