"""Writing a checkpoint file (:func:`save_checkpoint`): names, dtypes and the config
checked first, then the archive written to a temporary file, fsynced and renamed over the
target (see :mod:`npvae.training.archive`)."""

import json
import os
import stat
import tempfile
import zipfile

import numpy as np

from npvae.training.archive_format import (
    _ALLOWED_KINDS,
    _NAME_RE,
    FORMAT_NAME,
    FORMAT_VERSION,
    META_KEY,
    _crc32,
)


def save_checkpoint(path, arrays, config, *, kind="npvae.VAE", compress=False):
    """Write arrays and a JSON config to one ``.npz`` file, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Target file; written exactly as given (no ``.npz`` is appended). Its
        directory must exist. An existing file is replaced only once the new one
        is complete on disk.
    arrays : dict of str to numpy.ndarray
        Arrays to store. Names are ``/``-separated segments of letters, digits,
        ``_``, ``.`` and ``-`` (for example ``"params/encoder.0.W"``,
        ``"optim/m"``). Dtypes may be bool, integer, float, complex or string;
        object and structured arrays are refused. Arrays are stored C-ordered.
    config : dict
        JSON-serialisable settings: dicts with string keys, lists, tuples, str,
        int, float, bool and None. Tuples come back as lists. NaN and infinity
        round-trip (Python's JSON extension).
    kind : str, default "npvae.VAE"
        What the checkpoint holds; ``load_checkpoint(kind=...)`` checks it.
    compress : bool, default False
        Deflate the archive (smaller, slower to write and read).

    Raises
    ------
    TypeError
        An array is not an ndarray or has an unsupported dtype, or the config
        holds a value JSON cannot store (the message names its key).
    ValueError
        An array name is empty, reserved or malformed.
    FileNotFoundError
        The target directory does not exist.
    """
    path = os.fspath(path)
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"kind must be a non-empty string, got {kind!r}")
    prepared = _prepare_arrays(arrays)
    _check_config(config)
    manifest = [
        {"name": name, "shape": list(a.shape), "dtype": a.dtype.str, "crc32": _crc32(a)}
        for name, a in prepared.items()
    ]
    meta_doc = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "kind": kind,
                "npvae_version": _npvae_version(), "config": config, "arrays": manifest}
    meta = np.frombuffer(json.dumps(meta_doc).encode("utf-8"), dtype=np.uint8)

    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"cannot save checkpoint {path!r}: directory {directory!r} does not exist; "
            "create it first (os.makedirs)"
        )
    mode = _target_mode(path)
    tmp = tempfile.NamedTemporaryFile(
        delete=False, dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp"
    )
    try:
        with tmp:
            _write_npz(tmp, meta, prepared, compress)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp.name, mode)
        os.replace(tmp.name, path)
    except BaseException:
        try:
            os.unlink(tmp.name)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def _prepare_arrays(arrays):
    """Validate names and dtypes; return a dict of C-contiguous arrays."""
    if not isinstance(arrays, dict):
        raise TypeError(f"arrays must be a dict of name -> ndarray, got {type(arrays).__name__}")
    prepared = {}
    for name, a in arrays.items():
        if not isinstance(name, str):
            raise TypeError(f"array names must be strings, got {name!r}")
        if name == META_KEY or name.startswith("__"):
            raise ValueError(f"array name {name!r} is reserved (names starting with '__'); "
                             "rename it")
        if not _NAME_RE.fullmatch(name):
            raise ValueError(
                f"array name {name!r} is not allowed: use '/'-separated segments of letters, "
                "digits, '_', '.' and '-', e.g. 'params/encoder.0.W'"
            )
        if isinstance(a, np.ma.MaskedArray):
            raise TypeError(f"array {name!r} is a masked array; its mask would be lost: "
                            "store a.filled(...) and np.ma.getmaskarray(a) separately")
        if not isinstance(a, (np.ndarray, np.generic)):
            raise TypeError(f"array {name!r} is a {type(a).__name__}, not a numpy array; "
                            "wrap it with np.asarray(...)")
        a = np.asarray(a, order="C")
        if a.dtype.kind not in _ALLOWED_KINDS:
            raise TypeError(
                f"array {name!r} has dtype {a.dtype} which checkpoints do not store "
                "(object arrays would need pickle); convert it to a numeric dtype"
            )
        prepared[name] = a
    return prepared


def _check_config(config):
    """Raise TypeError naming the first key whose value JSON cannot store."""
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    _check_json_value(config, "config")


def _check_json_value(value, where):
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):  # includes np.float64, a float subclass
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a non-string key {key!r}; JSON keys must be "
                                "strings (they would silently become strings): use str keys")
            _check_json_value(item, f"{where}[{key!r}]")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_json_value(item, f"{where}[{i}]")
        return
    hint = "convert it with .item() or .tolist()" if isinstance(value, (np.generic, np.ndarray)) \
        else "store it as a str, number, bool, None, list or dict"
    raise TypeError(f"{where} is a {type(value).__name__}, which is not JSON-serialisable; {hint}")


def _npvae_version():
    import npvae  # lazy: npvae/__init__ may import this module

    return getattr(npvae, "__version__", None)


def _write_npz(fileobj, meta, arrays, compress):
    compression = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(fileobj, mode="w", compression=compression, allowZip64=True) as zf:
        for name, a in [(META_KEY, meta), *arrays.items()]:
            with zf.open(name + ".npy", mode="w", force_zip64=True) as entry:
                np.lib.format.write_array(entry, a, allow_pickle=False)


def _target_mode(path):
    """Keep an existing file's permissions; new files get rw-r--r--."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o644


def _fsync_directory(directory):
    """Make the rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
