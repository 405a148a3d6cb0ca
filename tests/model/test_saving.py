"""save and load_model: round trips, atomic writes, and hostile or damaged files (each a
clear error, nothing half-built, the old file kept)."""



import json
import os
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

import minicnn
from minicnn import Sequential, load_model
from minicnn.layers import (
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    MaxPool2D,
)
from minicnn.optimizers import (
    Adam,
    AdamW,
)
from tests.helpers import (
    ROOT,
    bn_cnn,
    config_of,
    read_npz,
    small_cnn,
    small_dense_model,
    synthetic_images,
    trained_model,
    write_npz,
)


def test_new_layers_save_and_load(tmp_path):
    x, y = synthetic_images(16, 8)
    model = bn_cnn()
    model.compile(AdamW(), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=0)
    model.save(tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(loaded.predict(x), model.predict(x), rtol=1e-6)
    loaded.fit(x, y, batch_size=8, epochs=1, verbose=0)













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


def test_save_refuses_non_finite_weights_and_keeps_the_old_file(tmp_path):
    model = trained_model()
    path = tmp_path / "m.npz"
    model.save(path)
    before = path.read_bytes()
    model.layers[-1].params["kernel"][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        model.save(path)
    assert path.read_bytes() == before




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






def test_numpy_scalars_in_layer_configs_save_and_load(tmp_path):
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
    model = small_dense_model()
    spoil(model)
    path = tmp_path / "m.npz"
    with pytest.raises(ValueError, match=f"would not load back.*{message}.*nothing was written"):
        model.save(path)
    assert list(tmp_path.iterdir()) == []


def test_a_schedule_minicnn_cannot_rebuild_is_refused_at_save(tmp_path):
    from minicnn.optimizers import LearningRateSchedule

    class Halving(LearningRateSchedule):
        def __call__(self, step):
            return 0.01 / 2 ** step

    model = small_dense_model()
    model.compile(Adam(Halving()), "sparse_categorical_crossentropy")
    path = tmp_path / "m.npz"
    path.write_bytes(b"the user's old file")
    with pytest.raises(ValueError, match="would not load back"):
        model.save(path)
    assert path.read_bytes() == b"the user's old file"


def test_build_after_fit_changes_nothing_and_takes_keras_input_shapes():
    model = small_dense_model()
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
        small_dense_model().build((None, 5))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_model_file(tmp_path, damage):
    path = tmp_path / "m.npz"
    small_cnn().save(path)
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not a model" * 50,
                      "empty": b""}[damage])
    with pytest.raises(ValueError, match="corrupt, truncated or not a minicnn model"):
        load_model(path)


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    model = small_cnn()
    model.save(path)
    original = path.read_bytes()

    def broken_savez(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]




def test_save_and_load_round_trip(tmp_path, backend):
    x, y = synthetic_images(48, 8)
    model = Sequential([Conv2D(3, (3, 3), activation="relu", input_shape=(8, 8, 1)),
                        MaxPool2D(), Flatten(), Dense(4, activation="softmax")])
    model.compile(Adam(0.01), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, epochs=1, verbose=0, seed=0)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.optimizer.iterations == model.optimizer.iterations
    # the optimizer state came along: one more step gives the same weights
    model.fit(x, y, epochs=1, verbose=0, seed=3, shuffle=False)
    loaded.fit(x, y, epochs=1, verbose=0, seed=3, shuffle=False)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert not [p for p in tmp_path.iterdir() if p.name != "model.npz"]  # no temp files left


class Square(minicnn.layers.Layer):
    """A learner's own layer, y = x^2, saved by class name like any other."""

    def forward(self, x, training=False):
        self._x = x
        return x * x

    def backward(self, dy):
        return 2 * self._x * dy


def test_a_model_with_a_custom_layer_loads_with_custom_objects(tmp_path):
    model = Sequential([Dense(4, input_shape=(3,)), Square(), Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    x, y = np.random.default_rng(0).standard_normal((8, 3)), np.arange(8) % 2
    model.fit(x, y, epochs=1, verbose=0, seed=0)
    path = tmp_path / "custom.npz"
    model.save(path)
    with pytest.raises(ValueError, match="unknown layer class 'Square': pass it in "
                                         "custom_objects") as info:
        load_model(path)
    assert "corrupt" not in str(info.value)
    loaded = load_model(path, custom_objects={"Square": Square})
    np.testing.assert_allclose(loaded.predict(x), model.predict(x), rtol=1e-6)
    with pytest.raises(TypeError, match="custom_objects must map class names"):
        load_model(path, custom_objects={"Square": "Square"})


def test_a_registered_layer_needs_no_custom_objects(tmp_path):
    from minicnn.layers import REGISTERED_LAYERS, register_layer

    @register_layer
    class Cube(minicnn.layers.Layer):
        def forward(self, x, training=False):
            return x * x * x

    try:
        model = Sequential([Dense(2, input_shape=(3,)), Cube()])
        model.save(tmp_path / "cube.npz")
        assert isinstance(load_model(tmp_path / "cube.npz").layers[1], Cube)
    finally:
        REGISTERED_LAYERS.pop("Cube")
    with pytest.raises(TypeError, match="register_layer takes a minicnn Layer subclass"):
        register_layer(int)


@pytest.mark.parametrize("name", ["scale/alpha", "", "1st", "two words", "gewicht_ä", 7])
def test_a_weight_name_a_file_cannot_hold_is_refused_when_the_layer_is_built(name):
    """A custom layer's weight names are keys in the saved file ('/' separates their
    parts): one that could not load back is a clear error at build, before any training."""

    class Scaled(minicnn.layers.Layer):
        def weight_specs(self, input_shape):
            return {name: minicnn.layers.Weight((input_shape[-1],), "ones")}

    with pytest.raises(ValueError, match=r"names a weight .* ASCII letters, digits and '_'"):
        Sequential([Dense(2, input_shape=(3,)), Scaled()])


def test_a_custom_layer_with_a_weight_of_its_own_saves_and_loads(tmp_path):
    from minicnn.layers import REGISTERED_LAYERS, register_layer

    @register_layer
    class Scale(minicnn.layers.Layer):
        def weight_specs(self, input_shape):
            return {"scale_alpha": minicnn.layers.Weight((input_shape[-1],), "ones")}

        def forward(self, x, training=False):
            self._x = x
            return x * self.params["scale_alpha"]

        def backward(self, dy):
            self.grads["scale_alpha"] = (dy * self._x).sum(axis=0)
            return dy * self.params["scale_alpha"]

    try:
        model = Sequential([Dense(2, input_shape=(3,)), Scale()])
        model.compile("adam", "mse")
        x = np.random.default_rng(0).standard_normal((8, 3))
        model.fit(x, x[:, :2], epochs=2, verbose=0, seed=0)
        model.save(tmp_path / "scale.npz")
        loaded = load_model(tmp_path / "scale.npz")
        for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    finally:
        REGISTERED_LAYERS.pop("Scale")


def test_a_saved_model_resumes_its_dropout_draws(tmp_path):
    """fit, save, load, fit trains exactly as fit, fit: Dropout's generator is in the file."""
    from minicnn.layers import Dropout
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((16, 6)), rng.integers(0, 3, 16)

    def model():
        made = Sequential([Dense(8, activation="relu", input_shape=(6,)), Dropout(0.5, seed=1),
                           Dense(3, activation="softmax")])
        made.compile("adam", "sparse_categorical_crossentropy")
        return made

    straight = model()
    straight.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=0)
    straight.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=0)
    resumed = model()
    resumed.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=0)
    resumed.save(tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    loaded.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=0)
    for a, b in zip(straight.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("state", ["PCG64", {"bit_generator": "Lottery"},
                                   {"bit_generator": "PCG64", "state": "no"}])
def test_a_bad_generator_state_in_a_file_is_a_clear_error(tmp_path, state):
    from minicnn.layers import Dropout
    model = Sequential([Dense(3, input_shape=(2,)), Dropout(0.5, seed=1)])
    model.compile("sgd", "mse")
    path = tmp_path / "m.npz"
    model.save(path)
    arrays = read_npz(path)
    cfg = config_of(arrays)
    cfg["layers"][1]["rng_state"] = state
    write_npz(path, {k: v for k, v in arrays.items() if k != "config"}, cfg)
    with pytest.raises(ValueError, match="rng_state"):
        load_model(path)
