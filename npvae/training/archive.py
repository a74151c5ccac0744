"""The checkpoint file format: named arrays plus a JSON config in one ``.npz`` file.

What a model's checkpoint holds (its kind, its parameters' names) is
:mod:`npvae.training.checkpoint`, which re-exports this module's API.

A checkpoint is an ordinary NumPy ``.npz`` archive (a zip of ``.npy`` files), so
``np.load`` can open it anywhere. Besides the arrays it holds one reserved entry,
``__meta__.json``: a uint8 array with the UTF-8 bytes of a JSON document ::

    {"format": "npvae-checkpoint", "format_version": 1, "kind": "npvae.VAE",
     "npvae_version": "0.1.0", "config": {...},
     "arrays": [{"name": "params/encoder.0.W", "shape": [784, 400],
                 "dtype": "<f4", "crc32": 123456789}, ...]}

Writing is atomic: the archive goes to a temporary file in the target's
directory, is flushed and fsynced, and only then renamed over the target, so a
crash leaves either the old file or the new one, never half of one. Loading never
unpickles (``allow_pickle=False``) and checks the format version, the kind, and
every array's presence, shape, dtype and CRC-32 against the manifest.
"""

import json
import os
import re
import stat
import tempfile
import zipfile
import zlib

import numpy as np

__all__ = [
    "CheckpointError",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "META_KEY",
    "check_shapes",
    "load_checkpoint",
    "save_checkpoint",
]

FORMAT_NAME = "npvae-checkpoint"
FORMAT_VERSION = 1
META_KEY = "__meta__.json"

# Dtype kinds that ``.npy`` stores without pickle and that compare exactly:
# bool, signed/unsigned int, float, complex, bytes, unicode.
_ALLOWED_KINDS = "biufcSU"
# Segments of letters, digits, '_', '.', '-' joined by '/'; no leading '.' or '_'
# in the first segment ('__' names are reserved for the format itself).
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9_][A-Za-z0-9_.\-]*)*")


class CheckpointError(ValueError):
    """A checkpoint file is damaged, of the wrong format or kind, or does not fit."""


# ----------------------------------------------------------------------------- save


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


def _crc32(a):
    return zlib.crc32(a.reshape(-1).view(np.uint8))


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


# ----------------------------------------------------------------------------- load


def load_checkpoint(path, *, kind=None):
    """Read and verify a checkpoint written by `save_checkpoint`.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file.
    kind : str, optional
        If given, the checkpoint's kind must equal it.

    Returns
    -------
    arrays : dict of str to numpy.ndarray
        Every stored array, in the order they were saved.
    config : dict
        The JSON config as saved (tuples come back as lists).
    meta : dict
        The whole metadata document: ``format``, ``format_version``, ``kind``,
        ``npvae_version`` (of the writer), ``config`` and the ``arrays`` manifest.

    Raises
    ------
    CheckpointError
        The file is not an npvae checkpoint (truncated, not a zip, no metadata),
        was written by a newer format version, has another kind, or an array is
        missing, unexpected, of the wrong shape or dtype, an object array, or
        fails its checksum. The message names the file and the array.
    FileNotFoundError
        The file does not exist.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:2] != b"PK" or not zipfile.is_zipfile(path):
        what = "empty file" if not head else f"starts with {head!r}, not a zip header"
        if head[:2] == b"PK":
            what = "zip end-of-archive record missing"
        raise CheckpointError(
            f"{path} is not an npvae checkpoint (truncated or not an .npz): {what}"
        )
    try:
        npz = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CheckpointError(
            f"{path} is not an npvae checkpoint (truncated or not an .npz): {exc}"
        ) from exc
    with npz:
        meta = _read_meta(npz, path)
        _check_header(meta, path, kind)
        manifest = _check_manifest(meta, npz.files, path)
        arrays = {entry["name"]: _read_array(npz, entry, path) for entry in manifest}
    return arrays, meta["config"], meta


def _read_meta(npz, path):
    if META_KEY not in npz.files:
        raise CheckpointError(
            f"{path} is not an npvae checkpoint: it is an .npz without the {META_KEY!r} "
            "entry (a plain np.savez file?); write it with "
            "npvae.training.checkpoint.save_checkpoint"
        )
    try:
        raw = npz[META_KEY]
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError(f"expected a 1-D uint8 array, got {raw.dtype} {raw.shape}")
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise CheckpointError(f"{path}: the metadata entry {META_KEY!r} is damaged: {exc}") \
            from exc
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: the metadata entry {META_KEY!r} is not a JSON object")
    return meta


def _check_header(meta, path, kind):
    if meta.get("format") != FORMAT_NAME:
        raise CheckpointError(
            f"{path} is not an npvae checkpoint: format is {meta.get('format')!r}, "
            f"expected {FORMAT_NAME!r}"
        )
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{path}: invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format_version {version}, written by a newer npvae; upgrade npvae "
            f"(this version reads format_version <= {FORMAT_VERSION})"
        )
    if kind is not None and meta.get("kind") != kind:
        raise CheckpointError(
            f"{path} holds a {meta.get('kind')!r} checkpoint, expected {kind!r}"
        )
    if not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{path}: metadata has no 'config' object")


def _check_manifest(meta, files, path):
    manifest = meta.get("arrays")
    keys = ("name", "shape", "dtype", "crc32")
    if not isinstance(manifest, list) or not all(
        isinstance(e, dict) and all(k in e for k in keys) for e in manifest
    ):
        raise CheckpointError(f"{path}: metadata 'arrays' manifest is malformed")
    listed = [e["name"] for e in manifest]
    present = set(files) - {META_KEY}
    missing = [n for n in listed if n not in present]
    if missing:
        raise CheckpointError(
            f"{path} is damaged: array(s) {', '.join(missing)} listed in the manifest "
            "are missing from the file"
        )
    unexpected = sorted(present - set(listed))
    if unexpected:
        raise CheckpointError(
            f"{path} is damaged: array(s) {', '.join(unexpected)} are in the file but "
            "not in the manifest"
        )
    return manifest


def _read_array(npz, entry, path):
    name = entry["name"]
    try:
        a = npz[name]
    except ValueError as exc:
        if "pickle" in str(exc) or "Object arrays" in str(exc):
            raise CheckpointError(
                f"{path}: array {name!r} is an object array, which would need unpickling; "
                "checkpoints never unpickle, so it is refused"
            ) from exc
        raise CheckpointError(f"{path}: array {name!r} is damaged: {exc}") from exc
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise CheckpointError(f"{path}: array {name!r} is damaged: {exc}") from exc
    if list(a.shape) != list(entry["shape"]):
        raise CheckpointError(
            f"{path}: array {name!r} has shape {a.shape}, the manifest says "
            f"{tuple(entry['shape'])}; the file is damaged"
        )
    if a.dtype.str != entry["dtype"]:
        raise CheckpointError(
            f"{path}: array {name!r} has dtype {a.dtype.str}, the manifest says "
            f"{entry['dtype']}; the file is damaged"
        )
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    if _crc32(a) != entry["crc32"]:
        raise CheckpointError(
            f"{path}: array {name!r} fails its CRC-32 checksum; the file is damaged"
        )
    return a


# ----------------------------------------------------------------------------- shapes


def check_shapes(arrays, expected, *, path=None):
    """Check that arrays have the shapes a model expects.

    Parameters
    ----------
    arrays : dict of str to numpy.ndarray
        Arrays as returned by `load_checkpoint`.
    expected : dict of str to tuple of int
        Required names and their shapes. Arrays not named here are not checked.
    path : str or os.PathLike, optional
        The file the arrays came from, for the error message.

    Raises
    ------
    CheckpointError
        Listing every missing array and every mismatch, e.g.
        ``params/encoder.0.W: expected (784, 400), file has (784, 300)``.
    """
    problems = []
    for name, shape in expected.items():
        want = tuple(int(s) for s in shape)
        if name not in arrays:
            problems.append(f"{name}: expected {want}, missing from the file")
            continue
        have = tuple(np.shape(arrays[name]))
        if have != want:
            problems.append(f"{name}: expected {want}, file has {have}")
    if problems:
        source = f"{os.fspath(path)}: " if path is not None else ""
        raise CheckpointError(
            f"{source}checkpoint does not fit the model ({len(problems)} problem"
            f"{'s' if len(problems) > 1 else ''}): " + "; ".join(problems)
        )
