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

from npvae.core.memory import MemoryBudgetError, check_memory
from npvae.core.safe_npz import MAX_MEMBERS, NpzReader, UnsafeFileError

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
MAX_META_BYTES = 64 << 20  # the JSON metadata: config and history, far below this
MAX_JSON_DEPTH = 64  # a real config nests 4 levels

# Dtype kinds that ``.npy`` stores without pickle and that compare exactly:
# bool, signed/unsigned int, float, complex, bytes, unicode.
_ALLOWED_KINDS = "biufcSU"  # as npvae.core.safe_npz.ALLOWED_KINDS
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


def load_checkpoint(path, *, kind=None, check=None):
    """Read and verify a checkpoint written by `save_checkpoint`.

    Nothing is trusted: the file must be a regular file, the manifest's types and sizes
    must agree with the archive's real member sizes, and ``check`` (if given) sees the
    metadata before any array is allocated. See :mod:`npvae.core.safe_npz`.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file.
    kind : str, optional
        If given, the checkpoint's kind must equal it.
    check : callable, optional
        ``check(meta)`` is called once the metadata and the manifest are validated and
        before any array is read; it may raise `CheckpointError` (or ``ValueError``, which
        is turned into one) to refuse the file, e.g. because the config does not describe
        the arrays or the arrays would not fit in memory.

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
        For every problem with the file's content: not a regular file, truncated, not a
        zip, no metadata, damaged or over-deep metadata, encrypted or oddly compressed
        members, a manifest of the wrong types or sizes, a newer format version, another
        kind, an array missing, unexpected, of the wrong shape or dtype, an object array,
        or failing its checksum. The message names the file and the array.
    FileNotFoundError, PermissionError
        The file does not exist or cannot be opened.
    """
    path = os.fspath(path)
    try:
        reader = NpzReader(path)
    except UnsafeFileError as exc:
        raise CheckpointError(f"{path} is not an npvae checkpoint (truncated or not an "
                              f".npz): {_one_line(exc).removeprefix(path).lstrip(': ')}") \
            from None
    try:
        with reader as npz:
            meta = _read_meta(npz, path)
            _check_header(meta, path, kind)
            manifest, headers = _check_manifest(meta, npz, path)
            check_memory(sum(h.data_bytes for h in headers.values()),
                         f"loading {path}", "load it on a machine with more memory")
            if check is not None:
                check(meta)
            arrays = {e["name"]: _read_array(npz, e, headers[e["name"]], path)
                      for e in manifest}
    except CheckpointError:
        raise
    except (UnsafeFileError, MemoryBudgetError) as exc:
        raise CheckpointError(_one_line(exc)) from None
    except ValueError as exc:  # a check() that raised a plain ValueError
        raise CheckpointError(f"{path}: {_one_line(exc)}") from None
    return arrays, meta["config"], meta


def _one_line(exc):
    return " ".join(str(exc).split())


def _json_depth(value, limit):
    """Nesting depth of a parsed JSON value, counted without recursion, up to ``limit``."""
    stack, depth = [(value, 1)], 0
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            depth = max(depth, d)
            if depth > limit:
                return depth
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return depth


def _read_meta(npz, path):
    if META_KEY not in npz.names:
        raise CheckpointError(
            f"{path} is not an npvae checkpoint: it is an .npz without the {META_KEY!r} "
            "entry (a plain np.savez file?); write it with "
            "npvae.training.checkpoint.save_checkpoint"
        )
    header = npz.header(META_KEY)
    if header.dtype != np.uint8 or len(header.shape) != 1:
        raise CheckpointError(f"{path}: the metadata entry {META_KEY!r} is damaged: expected "
                              f"a 1-D uint8 array, got {header.dtype} {header.shape}")
    if header.data_bytes > MAX_META_BYTES:
        raise CheckpointError(f"{path}: the metadata entry {META_KEY!r} is "
                              f"{header.data_bytes} bytes, more than {MAX_META_BYTES}; the "
                              "file is damaged")
    raw = npz.read(META_KEY, header)
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        what = "nested too deeply" if isinstance(exc, RecursionError) else _one_line(exc)
        raise CheckpointError(f"{path}: the metadata entry {META_KEY!r} is damaged: "
                              f"{what}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: the metadata entry {META_KEY!r} is not a JSON object")
    if _json_depth(meta, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise CheckpointError(f"{path}: the metadata is nested more than {MAX_JSON_DEPTH} "
                              "levels deep; the file is damaged or hostile")
    return meta


def _check_header(meta, path, kind):
    if meta.get("format") != FORMAT_NAME:
        raise CheckpointError(
            f"{path} is not an npvae checkpoint: format is {_brief(meta.get('format'))}, "
            f"expected {FORMAT_NAME!r}"
        )
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{path}: invalid format_version {_brief(version)}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format_version {version}, written by a newer npvae; upgrade npvae "
            f"(this version reads format_version <= {FORMAT_VERSION})"
        )
    if kind is not None and meta.get("kind") != kind:
        raise CheckpointError(
            f"{path} holds a {_brief(meta.get('kind'))} checkpoint, expected {kind!r}"
        )
    if not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{path}: metadata has no 'config' object")


def _brief(value, limit=60):
    """repr of a value from a file, cut short: a hostile file may hold megabytes."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _check_entry(e, path):
    """Validate one manifest entry's types; return ``(name, shape, dtype)``."""
    if not isinstance(e, dict) or any(k not in e for k in ("name", "shape", "dtype", "crc32")):
        raise CheckpointError(f"{path}: metadata 'arrays' manifest is malformed: every entry "
                              "needs name, shape, dtype and crc32")
    name, shape, dtype, crc = e["name"], e["shape"], e["dtype"], e["crc32"]
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise CheckpointError(f"{path}: manifest names an array {_brief(name)}, not a valid "
                              "array name")
    if not isinstance(shape, list) or len(shape) > 64 or not all(
            _is_int(s) and s >= 0 for s in shape):
        raise CheckpointError(f"{path}: manifest shape of {name!r} is {_brief(shape)}, not a "
                              "list of non-negative integers")
    try:
        dt = np.dtype(dtype) if isinstance(dtype, str) and len(dtype) <= 16 else None
    except (TypeError, ValueError):
        dt = None
    if dt is None or dt.str != dtype or dt.kind not in _ALLOWED_KINDS or dt.fields is not None:
        raise CheckpointError(f"{path}: manifest dtype of {name!r} is {_brief(dtype)}, not a "
                              "plain numpy dtype string like '<f4'")
    if not _is_int(crc) or not 0 <= crc < 1 << 32:
        raise CheckpointError(f"{path}: manifest crc32 of {name!r} is {_brief(crc)}, not a "
                              "32-bit checksum")
    return name, tuple(shape), dt


def _check_manifest(meta, npz, path):
    """Check the manifest's types, and every array's header against it and against the
    archive's real member sizes; return ``(manifest, headers)`` without reading any data."""
    manifest = meta.get("arrays")
    if not isinstance(manifest, list) or len(manifest) > MAX_MEMBERS:
        raise CheckpointError(f"{path}: metadata 'arrays' manifest is malformed")
    entries = [_check_entry(e, path) for e in manifest]
    listed = [name for name, _, _ in entries]
    if len(set(listed)) != len(listed):
        raise CheckpointError(f"{path}: the manifest lists an array twice; it is damaged")
    present = set(npz.names) - {META_KEY}
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
    headers = {}
    for name, shape, dt in entries:
        h = npz.header(name)
        if h.shape != shape:
            raise CheckpointError(
                f"{path}: array {name!r} has shape {h.shape}, the manifest says "
                f"{shape}; the file is damaged"
            )
        if h.dtype.str != dt.str:
            raise CheckpointError(
                f"{path}: array {name!r} has dtype {h.dtype.str}, the manifest says "
                f"{dt.str}; the file is damaged"
            )
        headers[name] = h
    return manifest, headers


def _read_array(npz, entry, header, path):
    name = entry["name"]
    a = npz.read(name, header)
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
