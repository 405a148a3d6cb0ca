import gzip
import hashlib

import numpy as np
import pytest

from minicnn import datasets
from minicnn.datasets import DatasetError, load_fashion_mnist, read_idx, write_idx


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, name, dtype):
    array = (np.arange(2 * 3 * 4) - 5).reshape(2, 3, 4).astype(dtype)
    if dtype == np.uint8:
        array = np.abs(array).astype(np.uint8)
    write_idx(tmp_path / name, array)
    np.testing.assert_array_equal(read_idx(tmp_path / name), array)
    assert (tmp_path / name).read_bytes()[:2] == (b"\x1f\x8b" if name.endswith(".gz")
                                                  else b"\x00\x00")


@pytest.mark.parametrize("data, message", [
    (b"\x01\x00\x08\x01" + b"\x00\x00\x00\x01" + b"\x05", "bad magic"),
    (b"\x00\x00\x07\x01" + b"\x00\x00\x00\x01" + b"\x05", "bad IDX header"),
    (b"\x00\x00\x08\x03" + b"\x00\x00\x00\x01", "truncated IDX header"),
    (b"\x00\x00\x08\x01" + b"\x00\x00\x00\x05" + b"\x01\x02", "truncated or damaged"),
    (b"\x00\x00\x08\x01" + b"\x00\x00\x00\x01" + b"\x01\x02", "truncated or damaged"),
    (b"\x00", "bad magic"),
])
def test_malformed_idx_is_rejected_with_the_file_name(tmp_path, data, message):
    path = tmp_path / "broken-idx"
    path.write_bytes(data)
    with pytest.raises(DatasetError, match=message) as info:
        read_idx(path)
    assert "broken-idx" in str(info.value)


def test_truncated_gzip_names_the_file(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(b"\x00" * 1000)[:20])
    with pytest.raises(DatasetError, match="x.gz"):
        read_idx(path)


def fake_fashion_folder(folder, seed=0):
    """Four small IDX files, and the checksum table that would accept them."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 255, (6, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 6).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 255, (3, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 3).astype(np.uint8),
    }
    table = {}
    for name, array in arrays.items():
        write_idx(folder / (name + ".gz"), array)
        raw = gzip.decompress((folder / (name + ".gz")).read_bytes())
        table[name] = (hashlib.sha256(raw).hexdigest(), len(raw))
    return arrays, table


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No real data, no network: an empty cache, no Debian folder, downloads forbidden."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MINICNN_DATA", raising=False)
    monkeypatch.setattr(datasets, "DEBIAN_DIR", tmp_path / "debian")

    def no_network(*args, **kwargs):
        raise AssertionError("the loader must not download when a local copy verifies")

    monkeypatch.setattr(datasets.urllib.request, "urlopen", no_network)
    return tmp_path


def test_lookup_order(isolated, monkeypatch):
    """path= beats $MINICNN_DATA, which beats the cache, which beats Debian's folder."""
    folders = {"debian": isolated / "debian", "cache": datasets.cache_dir(),
               "env": isolated / "env", "explicit": isolated / "explicit"}
    made = {name: fake_fashion_folder(folder, seed) for seed, (name, folder)
            in enumerate(folders.items())}

    def loads_from(name, **kwargs):
        arrays, table = made[name]
        monkeypatch.setattr(datasets, "FILES", table)  # only that folder's files verify
        (x_train, y_train), (x_test, _) = load_fashion_mnist(**kwargs)
        np.testing.assert_array_equal(y_train, arrays["train-labels-idx1-ubyte"])
        assert x_train.shape == (6, 28, 28) and x_train.dtype == np.uint8
        assert x_test.shape == (3, 28, 28)

    monkeypatch.setenv("MINICNN_DATA", str(folders["env"]))
    loads_from("explicit", path=folders["explicit"])
    loads_from("env")
    monkeypatch.delenv("MINICNN_DATA")
    loads_from("cache")
    for f in folders["cache"].iterdir():
        f.unlink()
    loads_from("debian")


def test_checksum_mismatch_is_detected(isolated, monkeypatch):
    _, table = fake_fashion_folder(isolated / "data")
    monkeypatch.setattr(datasets, "FILES", table)
    write_idx(isolated / "data" / "t10k-labels-idx1-ubyte.gz", np.array([9, 9, 9], np.uint8))
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte.gz: checksum mismatch"):
        load_fashion_mnist(path=isolated / "data")


def test_missing_data_without_network_says_how_to_get_it(isolated):
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist") as info:
        load_fashion_mnist(download=False)
    assert "MINICNN_DATA" in str(info.value) and str(isolated / "debian") in str(info.value)


def test_failed_download_leaves_no_partial_file(isolated, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(datasets.urllib.request, "urlopen", broken)
    with pytest.raises(DatasetError, match="network unreachable"):
        load_fashion_mnist()
    assert not list(datasets.cache_dir().glob("*"))


def test_xor_table():
    x, y = datasets.load_xor()
    np.testing.assert_array_equal(y, np.logical_xor(x[:, 0], x[:, 1]))


@pytest.mark.slow
def test_real_fashion_mnist():
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(y_train), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(y_test), [1000] * 10)
    np.testing.assert_array_equal(y_train[:10], [9, 0, 0, 3, 0, 2, 7, 2, 5, 5])
