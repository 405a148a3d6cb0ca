
import gzip
import http.server
import os
import threading
import time

import numpy as np
import pytest

from minicnn import datasets
from minicnn.datasets import DatasetError, load_fashion_mnist, read_idx, write_idx
from tests.helpers import fake_fashion_folder


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


@pytest.mark.parametrize("images, message", [
    (np.array([[[-1.2, 0.3], [2.5, 0.0]]]), "run from -1.2 to 2.5"),  # z-scores
    (np.array([[[-5, 3], [7, 0]]], dtype=np.int8), "run from -5 to 7"),
    (np.array([[[0, 300], [7, 65535]]], dtype=np.uint16), "run from 0 to 65535"),
    (np.array([[[np.nan, 0.0], [0.0, 0.0]]]), "NaN or inf"),
])
def test_to_float_images_refuses_what_is_neither_pixels_nor_scaled(images, message):
    from minicnn.datasets import to_float_images
    with pytest.raises(ValueError, match=message):
        to_float_images(images)


def test_to_float_images_scales_pixels_once():
    from minicnn.datasets import to_float_images
    pixels = np.array([[[0, 51], [255, 102]]], dtype=np.uint8)
    np.testing.assert_allclose(to_float_images(pixels)[..., 0], pixels / 255.0, rtol=1e-7)
    np.testing.assert_array_equal(to_float_images(pixels / 255.0), to_float_images(pixels))
    assert to_float_images(pixels.astype(np.float64)).max() == 1.0  # whole floats: pixels
