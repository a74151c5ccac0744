"""The downloader against a server that trickles bytes (on 127.0.0.1 only), killed downloads
that left .part files, and the timeout as an option and a CLI flag."""

import http.server
import threading
import time

import pytest

from npvae.cli import main
from npvae.datasets.download import FILES, DownloadError, fetch_mnist
from tests.test_datasets_download import fake_mnist  # noqa: F401 - a fixture


class Trickle:
    """An HTTP server on 127.0.0.1 that announces 1 MB and sends one byte every 20 ms, for at
    most ``limit`` seconds (then it closes: the test server always stops by itself)."""

    def __init__(self, limit=30.0):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(10**6))
                self.end_headers()
                end = time.monotonic() + limit
                try:
                    while time.monotonic() < end and not stop.is_set():
                        self.wfile.write(b"\0")
                        self.wfile.flush()
                        time.sleep(0.02)
                except OSError:  # the client gave up
                    pass

            def log_message(self, *args):
                pass

        stop = self.stop_event = threading.Event()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,),
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.stop_event.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


@pytest.fixture
def trickle():
    server = Trickle()
    yield server
    server.close()


def test_a_trickling_server_hits_the_deadline(tmp_path, trickle):
    sums = {f: "0" * 64 for f in FILES.values()}
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match="deadline of 1.5 s"):
        fetch_mnist(cache_dir=tmp_path, base_url=trickle.url, checksums=sums, progress=False,
                    timeout=1.0, deadline=1.5)
    assert time.monotonic() - t0 < 10  # deadline + one read timeout, with slack
    assert not [p for p in (tmp_path / "mnist").iterdir() if p.name.endswith(".part")]


def test_default_deadline_is_ten_timeouts(tmp_path, trickle):
    sums = {f: "0" * 64 for f in FILES.values()}
    with pytest.raises(DownloadError, match="deadline of 2 s"):
        fetch_mnist(cache_dir=tmp_path, base_url=trickle.url, checksums=sums, progress=False,
                    timeout=0.2)


def test_stale_part_files_are_removed(tmp_path, fake_mnist):  # noqa: F811
    server, arrays, sums = fake_mnist
    folder = tmp_path / "mnist"
    folder.mkdir()
    stale = folder / ".train-images-idx3-ubyte.gz.x1y2.part"
    stale.write_bytes(b"half a download, SIGKILLed")
    fetch_mnist(cache_dir=tmp_path, base_url=server.url, checksums=sums, progress=False)
    assert not stale.exists()
    assert not [p for p in folder.iterdir() if p.name.endswith(".part")]


def test_timeout_arguments_are_checked(tmp_path):
    with pytest.raises(TypeError, match="timeout"):
        fetch_mnist(cache_dir=tmp_path, timeout="60")
    with pytest.raises(ValueError, match="deadline"):
        fetch_mnist(cache_dir=tmp_path, deadline=0)


def test_cli_download_timeout_flag(tmp_path, trickle, monkeypatch, capsys):
    monkeypatch.setenv("NPVAE_MNIST_URL", trickle.url)
    t0 = time.monotonic()
    assert main(["train", "--dataset", "mnist", "--cache-dir", str(tmp_path),
                 "--download-timeout", "0.2", "--no-progress", "--no-figures",
                 "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "deadline of 2 s" in err and "Traceback" not in err
    assert time.monotonic() - t0 < 30
    assert main(["train", "--download-timeout", "0"]) == 2
    assert "--download-timeout" in capsys.readouterr().err
