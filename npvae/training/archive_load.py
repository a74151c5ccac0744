"""Reading a checkpoint file (:func:`load_checkpoint`) without trusting it: the metadata,
its header and its manifest checked against the archive before any array is read, every
array against its checksum; and :func:`check_shapes`, the arrays against a model's shapes
(see :mod:`npvae.training.archive`)."""

import json
import os

import numpy as np

from npvae.core.memory import MemoryBudgetError, check_memory
from npvae.core.safe_npz import MAX_MEMBERS, NpzReader, UnsafeFileError
from npvae.training.archive_format import (
    _ALLOWED_KINDS,
    _NAME_RE,
    FORMAT_NAME,
    FORMAT_VERSION,
    META_KEY,
    CheckpointError,
    _crc32,
)

MAX_META_BYTES = 64 << 20  # the JSON metadata: config and history, far below this
MAX_JSON_DEPTH = 64  # a real config nests 4 levels


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
