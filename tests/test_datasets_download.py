"""Tests of the MNIST downloader against a local HTTP server (no internet)."""

import functools
import hashlib
import http.server
import threading

import numpy as np
import pytest

from npvae.datasets import download, load_dataset
from npvae.datasets.download import (
    CHECKSUMS,
    FILES,
    MD5_CHECKSUMS,
    ChecksumError,
    DownloadError,
    cache_root,
    fetch_mnist,
)
from npvae.datasets.idx import write_idx

DEAD_URL = "http://127.0.0.1:9/"  # the discard port: nothing listens there


class _Server:
    """A static file server on 127.0.0.1 that counts the requests it answers."""

    def __init__(self, directory):
        self.requests = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        handler = functools.partial(Handler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,),
                                       daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def fake_mnist(tmp_path):
    """Four small IDX files in MNIST layout, served over HTTP; yields (server, arrays, sums)."""
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (50, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, 50, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, 20, dtype=np.uint8),
    }
    served = tmp_path / "served"
    served.mkdir()
    sums = {}
    for key, filename in FILES.items():
        write_idx(served / filename, arrays[key])
        sums[filename] = hashlib.sha256((served / filename).read_bytes()).hexdigest()
    server = _Server(served)
    yield server, arrays, sums
    server.stop()


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_downloads_once_then_works_offline(tmp_path, fake_mnist):
    server, arrays, sums = fake_mnist
    cache = tmp_path / "cache"
    got = fetch_mnist(cache_dir=cache, base_url=server.url, checksums=sums, progress=False)
    for key in FILES:
        np.testing.assert_array_equal(getattr(got, key), arrays[key])
    assert sorted(server.requests) == sorted(f"/{f}" for f in FILES.values())
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == sorted(FILES.values())
    server.stop()
    again = fetch_mnist(cache_dir=cache, base_url=DEAD_URL, checksums=sums, progress=False)
    np.testing.assert_array_equal(again.x_train, arrays["x_train"])
    assert len(server.requests) == 4


def test_bad_checksum_is_rejected_and_nothing_is_left(tmp_path, fake_mnist):
    server, _, sums = fake_mnist
    bad = dict(sums)
    name = "t10k-images-idx3-ubyte.gz"
    bad[name] = "0" * 64
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError) as info:
        fetch_mnist(cache_dir=cache, base_url=server.url, checksums=bad, progress=False)
    message = str(info.value)
    assert name in message and "0" * 64 in message and sums[name] in message
    folder = cache / "mnist"
    assert not (folder / name).exists()
    assert _leftovers(folder) == []


def test_corrupt_cached_file_is_downloaded_again(tmp_path, fake_mnist):
    server, arrays, sums = fake_mnist
    cache = tmp_path / "cache"
    fetch_mnist(cache_dir=cache, base_url=server.url, checksums=sums, progress=False)
    damaged = cache / "mnist" / "train-labels-idx1-ubyte.gz"
    damaged.write_bytes(b"garbage")
    got = fetch_mnist(cache_dir=cache, base_url=server.url, checksums=sums, progress=True)
    np.testing.assert_array_equal(got.y_train, arrays["y_train"])
    assert server.requests.count("/train-labels-idx1-ubyte.gz") == 2


def test_unreachable_server_or_missing_file_raises_download_error(tmp_path, fake_mnist):
    server, _, sums = fake_mnist
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="train-images-idx3-ubyte.gz.*offline"):
        fetch_mnist(cache_dir=cache, base_url=DEAD_URL, checksums=sums, progress=False,
                    timeout=5)
    assert _leftovers(cache / "mnist") == []
    with pytest.raises(DownloadError, match="404"):
        fetch_mnist(cache_dir=cache, base_url=server.url + "nowhere", checksums=sums,
                    progress=False)
    assert _leftovers(cache / "mnist") == []


def test_cache_dir_and_url_from_environment(tmp_path, fake_mnist, monkeypatch):
    server, arrays, sums = fake_mnist
    monkeypatch.setenv("NPVAE_DATA_DIR", str(tmp_path / "env-cache"))
    monkeypatch.setenv("NPVAE_FASHION_MNIST_URL", server.url)
    got = fetch_mnist("fashion-mnist", checksums=sums, progress=False)
    np.testing.assert_array_equal(got.x_test, arrays["x_test"])
    assert (tmp_path / "env-cache" / "fashion-mnist" / "t10k-images-idx3-ubyte.gz").is_file()


def test_cache_root_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("NPVAE_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "npvae"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "npvae"
    monkeypatch.setenv("NPVAE_DATA_DIR", str(tmp_path / "data"))
    assert cache_root() == tmp_path / "data"
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"


def test_md5_checksums_and_mirror_fallback(tmp_path, fake_mnist, monkeypatch):
    server, arrays, _ = fake_mnist
    md5 = {f: hashlib.md5((tmp_path / "served" / f).read_bytes()).hexdigest()
           for f in FILES.values()}
    monkeypatch.delenv("NPVAE_MNIST_URL", raising=False)
    monkeypatch.setitem(download.MIRRORS, "mnist", (DEAD_URL, server.url))
    got = fetch_mnist(cache_dir=tmp_path / "c", checksums=md5, progress=False, timeout=5)
    np.testing.assert_array_equal(got.x_train, arrays["x_train"])


def test_argument_errors(tmp_path, fake_mnist):
    server, _, sums = fake_mnist
    with pytest.raises(ValueError, match="unknown kind"):
        fetch_mnist("kmnist", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="no entry"):
        fetch_mnist(cache_dir=tmp_path, base_url=server.url, checksums={"a": "0" * 64})
    short = dict.fromkeys(sums, "abc")
    with pytest.raises(ValueError, match="neither SHA-256"):
        fetch_mnist(cache_dir=tmp_path, base_url=server.url, checksums=short, progress=False)


def test_published_checksum_tables_are_well_formed():
    for table, length in ((CHECKSUMS, 64), (MD5_CHECKSUMS, 32)):
        assert set(table) == {"mnist", "fashion-mnist"}
        for sums in table.values():
            assert set(sums) == set(FILES.values())
            assert all(len(s) == length and int(s, 16) >= 0 for s in sums.values())


def test_load_dataset_mnist_from_cache(tmp_path, fake_mnist, monkeypatch):
    server, arrays, sums = fake_mnist
    monkeypatch.setitem(download.CHECKSUMS, "mnist", sums)
    monkeypatch.setenv("NPVAE_MNIST_URL", server.url)
    ds = load_dataset("mnist", cache_dir=tmp_path / "c", progress=False)
    assert ds.x_train.shape == (50, 784) and ds.x_train.dtype == np.float32
    assert ds.image_shape == (28, 28) and ds.label_names[3] == "3"
    np.testing.assert_allclose(ds.x_train * 255, arrays["x_train"].reshape(50, -1), atol=1e-4)
    np.testing.assert_array_equal(ds.y_test, arrays["y_test"])
    sub = load_dataset("mnist", cache_dir=tmp_path / "c", n_train=10, n_test=5, seed=1)
    assert sub.x_train.shape == (10, 784) and sub.x_test.shape == (5, 784)
    with pytest.raises(ValueError, match="exceeds"):
        load_dataset("mnist", cache_dir=tmp_path / "c", n_train=51)
