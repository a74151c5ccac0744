"""Download MNIST and Fashion-MNIST once, verify them, and read them from a local cache.

Where files go
--------------
``<root>/<kind>/``, where ``<root>`` is, by priority: the ``cache_dir`` argument, the environment
variable ``NPVAE_DATA_DIR``, ``$XDG_CACHE_HOME/npvae``, then ``~/.cache/npvae``.

Where files come from
---------------------
The ``base_url`` argument, else the environment variable ``NPVAE_MNIST_URL`` (for ``"mnist"``)
or ``NPVAE_FASHION_MNIST_URL`` (for ``"fashion-mnist"``), else the public mirrors in
``MIRRORS``, tried in order. ``file://`` URLs work too.

Checksums
---------
``CHECKSUMS`` holds the SHA-256 of the four gzip files of each dataset, as published by
TensorFlow Datasets and matched by many independent projects; the MD5 sums that torchvision
pins are kept in ``MD5_CHECKSUMS`` for reference. Each download goes to a temporary file in the
cache directory, is verified, then renamed into place, so the cache never holds a partial or
unverified file under its final name. Once the four files are cached and verify, no network
access happens at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from npvae.core import checks as chk

from .idx import read_idx

FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}

MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion-mnist": (
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
}

URL_ENV = {"mnist": "NPVAE_MNIST_URL", "fashion-mnist": "NPVAE_FASHION_MNIST_URL"}

CHECKSUMS = {
    "mnist": {
        "train-images-idx3-ubyte.gz":
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz":
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz":
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz":
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz":
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz":
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz":
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz":
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}

MD5_CHECKSUMS = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}

_CHUNK = 1 << 16


class ChecksumError(ValueError):
    """A downloaded file does not match its expected digest."""


class DownloadError(OSError):
    """A file could not be fetched from any mirror."""


class MnistArrays(NamedTuple):
    """Raw arrays of an MNIST-format dataset.

    ``x_train`` (60000, 28, 28) uint8, ``y_train`` (60000,) uint8, ``x_test`` (10000, 28, 28)
    uint8, ``y_test`` (10000,) uint8 for the real datasets.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def cache_root(cache_dir=None):
    """Root of the npvae data cache (see the module docstring for the order of precedence)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("NPVAE_DATA_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "npvae"


def fetch_mnist(kind="mnist", *, cache_dir=None, base_url=None, progress=True,
                checksums=None, timeout=60.0, deadline=None):
    """Return MNIST or Fashion-MNIST, downloading the four files once if needed.

    Parameters
    ----------
    kind : {"mnist", "fashion-mnist"}
    cache_dir : str or os.PathLike, optional
        Cache root; the files go to ``<cache_dir>/<kind>/``. Defaults to ``$NPVAE_DATA_DIR``,
        then ``$XDG_CACHE_HOME/npvae``, then ``~/.cache/npvae``.
    base_url : str, optional
        URL of a directory holding the four ``*-ubyte.gz`` files. Defaults to
        ``$NPVAE_MNIST_URL`` / ``$NPVAE_FASHION_MNIST_URL``, then the public ``MIRRORS``.
    progress : bool
        Show a tqdm progress bar per download.
    checksums : mapping of str to str, optional
        File name -> expected hex digest (64 hex digits: SHA-256; 32: MD5). Defaults to the
        published SHA-256 sums in ``CHECKSUMS``. Use this when serving your own copies.
    timeout : float, default 60
        Seconds to wait for the server on connect and on each read.
    deadline : float, optional
        Seconds one file's download may take in all (default: ``10 * timeout``), so a server
        that trickles bytes cannot keep it going forever. It is checked after every read, so
        a download ends at most ``timeout`` seconds after it.

    Returns
    -------
    MnistArrays
        ``(x_train, y_train, x_test, y_test)``, raw uint8 arrays; images are (n, 28, 28).

    Raises
    ------
    ChecksumError
        A download (or a file already in the cache after re-downloading) has the wrong digest.
    DownloadError
        A file is missing from the cache and cannot be downloaded.
    """
    paths = download_files(kind, cache_dir=cache_dir, base_url=base_url, progress=progress,
                           checksums=checksums, timeout=timeout, deadline=deadline)
    arrays = {key: read_idx(paths[key]) for key in FILES}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise ValueError(f"{kind} {split} files have inconsistent shapes: images {x.shape}, "
                             f"labels {y.shape}; delete {paths[f'x_{split}'].parent} and retry")
    return MnistArrays(**arrays)


def download_files(kind="mnist", *, cache_dir=None, base_url=None, progress=True,
                   checksums=None, timeout=60.0, deadline=None):
    """Make sure the four files of ``kind`` are in the cache and verified.

    Parameters are those of :func:`fetch_mnist`.

    Returns
    -------
    dict of str to pathlib.Path
        ``{"x_train": ..., "y_train": ..., "x_test": ..., "y_test": ...}``.
    """
    if kind not in MIRRORS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {sorted(MIRRORS)}")
    timeout = chk.positive_float(timeout, "timeout")
    deadline = 10 * timeout if deadline is None else chk.positive_float(deadline, "deadline")
    sums = dict(CHECKSUMS[kind] if checksums is None else checksums)
    missing = [f for f in FILES.values() if f not in sums]
    if missing:
        raise ValueError(f"checksums has no entry for {missing}; give a hex digest per file")
    if base_url is None:
        base_url = os.environ.get(URL_ENV[kind]) or None
    mirrors = MIRRORS[kind] if base_url is None else (base_url,)
    folder = cache_root(cache_dir) / kind
    paths = {key: folder / filename for key, filename in FILES.items()}

    def cached(filename):
        path = folder / filename
        return path.is_file() and file_digest(path, sums[filename]) == sums[filename].lower()

    if all(cached(f) for f in FILES.values()):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    with _folder_lock(folder.parent / f".{kind}.lock"):  # one downloader at a time, so
        # every .part file left in the folder is stale (a killed download's)
        for name in os.listdir(folder):
            if name.startswith(".") and name.endswith(".part"):
                try:
                    os.unlink(folder / name)
                except OSError:
                    pass
        for filename in FILES.values():
            if not cached(filename):  # another process may have fetched it meanwhile
                _download_from_mirrors(mirrors, filename, folder / filename, sums[filename],
                                       progress, timeout, deadline)
    return paths


@contextlib.contextmanager
def _folder_lock(path):
    """An exclusive ``flock`` on the file ``path`` for the block (waits for another download
    of the same dataset; the kernel releases it if that process dies)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def file_digest(path, like):
    """Hex digest of a file with the algorithm implied by the digest ``like`` (SHA-256 or MD5)."""
    h = _hasher(like)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _hasher(expected):
    if not isinstance(expected, str):
        raise TypeError(f"a checksum must be a hex string, got {type(expected).__name__}")
    if len(expected) == 64:
        return hashlib.sha256()
    if len(expected) == 32:
        return hashlib.md5(usedforsecurity=False)  # matching a published sum, not security
    raise ValueError(f"checksum {expected!r} is neither SHA-256 (64 hex digits) "
                     "nor MD5 (32 hex digits)")


def _download_from_mirrors(mirrors, filename, path, expected, progress, timeout, deadline):
    errors = []
    for base in mirrors:
        url = base if base.endswith("/") else base + "/"
        url += filename
        try:
            _download(url, path, expected, progress, timeout, deadline)
            return
        except ChecksumError as exc:
            if len(mirrors) == 1:
                raise
            errors.append(f"{url}: {exc}")
        except OSError as exc:  # includes urllib.error.URLError and timeouts
            errors.append(f"{url}: {exc}")
    raise DownloadError(f"could not download {filename} ({'; '.join(errors)}). If you are "
                        f"offline, copy the file into {path.parent} by hand; to use another "
                        "mirror pass base_url= or set NPVAE_MNIST_URL / NPVAE_FASHION_MNIST_URL")


def _download(url, path, expected, progress, timeout, deadline):
    """Stream ``url`` to a temp file next to ``path``, verify it, then rename it into place;
    give up once ``deadline`` seconds have passed."""
    import urllib.request  # imported here: only a download needs it

    from tqdm.auto import tqdm

    h = _hasher(expected)
    end = time.monotonic() + deadline
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            read = getattr(resp, "read1", resp.read)  # what one receive brings, not 64 KiB
            with tqdm(total=total, unit="B", unit_scale=True, desc=path.name,
                      disable=not progress, leave=False) as bar:
                for block in iter(lambda: read(_CHUNK), b""):
                    out.write(block)
                    h.update(block)
                    bar.update(len(block))
                    if time.monotonic() > end:
                        raise TimeoutError(f"the download took longer than its deadline of "
                                           f"{deadline:g} s ({bar.n} bytes received); the "
                                           "server is too slow: try another mirror or pass a "
                                           "larger timeout")
        actual = h.hexdigest()
        if actual != expected.lower():
            raise ChecksumError(f"checksum mismatch for {path.name} downloaded from {url}: "
                                f"expected {expected.lower()}, got {actual}; the file was "
                                "deleted (a bad mirror or a corrupted transfer)")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
