"""Read and write the IDX format used by MNIST and Fashion-MNIST.

Layout (all integers big-endian)::

    byte 0-1   0x00 0x00                 magic
    byte 2     dtype code                0x08 uint8, 0x09 int8, 0x0B int16,
                                         0x0C int32, 0x0D float32, 0x0E float64
    byte 3     ndim
    4 * ndim   dimensions, uint32 each
    rest       the data, C order, big-endian

Files compressed with gzip (``.gz``) are recognised by their magic bytes and decompressed
transparently, whatever their name.
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

# IDX dtype code -> big-endian numpy dtype
IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {(dt.kind, dt.itemsize): code for code, dt in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(source):
    """Parse an IDX file (optionally gzip-compressed) into an array.

    Parameters
    ----------
    source : str, os.PathLike, bytes, bytearray or memoryview
        A path to the file, or its contents.

    Returns
    -------
    ndarray
        Native byte order, dtype one of uint8, int8, int16, int32, float32, float64, with the
        shape stored in the header.

    Raises
    ------
    ValueError
        On a wrong magic number, an unknown dtype code, a truncated file, trailing bytes after
        the data, or a damaged gzip stream. The message names the source.
    TypeError
        If ``source`` is neither a path nor bytes.
    """
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        with open(name, "rb") as f:
            raw = f.read()
    elif isinstance(source, (bytes, bytearray, memoryview)):
        name = "<bytes>"
        raw = bytes(source)
    else:
        raise TypeError("read_idx expects a path (str or os.PathLike) or bytes, "
                        f"got {type(source).__name__}")
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{name}: damaged or truncated gzip stream ({exc}); "
                             "delete the file and download it again") from exc
    return _parse(raw, name)


def _parse(raw, name):
    if len(raw) < 4:
        raise ValueError(f"{name}: only {len(raw)} bytes, too short for an IDX header (4 bytes)")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{name}: not an IDX file: the first two bytes are "
                         f"{raw[:2].hex()!r}, expected '0000'")
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X} {dt.name}" for c, dt in IDX_DTYPES.items())
        raise ValueError(f"{name}: unknown IDX dtype code 0x{code:02X}; known codes: {known}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{name}: truncated header: {ndim} dimensions need {header} bytes, "
                         f"the file has {len(raw)}")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=object)) * dtype.itemsize
    got = len(raw) - header
    if got < expected:
        raise ValueError(f"{name}: truncated: shape {shape} of {dtype.name} needs {expected} "
                         f"data bytes, found {got}; the file is incomplete, download it again")
    if got > expected:
        raise ValueError(f"{name}: {got - expected} trailing bytes after the data of shape "
                         f"{shape} ({expected} bytes); the header does not match the data")
    data = np.frombuffer(raw, dtype=dtype, count=expected // dtype.itemsize, offset=header)
    return data.reshape(shape).astype(dtype.newbyteorder("="))


def encode_idx(array):
    """Serialise an array to IDX bytes (uncompressed).

    Parameters
    ----------
    array : array_like
        dtype uint8, int8, int16, int32, float32 or float64; at most 255 dimensions, each
        smaller than 2**32.

    Returns
    -------
    bytes
    """
    array = np.asarray(array)
    code = _CODES.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise TypeError(f"IDX cannot store dtype {array.dtype}; convert first, e.g. "
                        "array.astype(np.uint8) or .astype(np.float32) (supported: uint8, int8, "
                        "int16, int32, float32, float64)")
    if array.ndim > 255:
        raise ValueError(f"IDX stores at most 255 dimensions, got {array.ndim}")
    if any(d >= 2**32 for d in array.shape):
        raise ValueError(f"IDX dimensions must be < 2**32, got shape {array.shape}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    body = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    return header + body


def write_idx(path, array, *, compress=None):
    """Write an array as an IDX file.

    Parameters
    ----------
    path : str or os.PathLike
        Destination. Written to a temporary file in the same directory, then renamed, so a
        crash never leaves a half-written file under the final name.
    array : array_like
        See :func:`encode_idx` for the supported dtypes.
    compress : bool or None
        gzip the file. ``None`` compresses when ``path`` ends with ``.gz``.
    """
    path = os.fspath(path)
    data = encode_idx(array)
    if compress is None:
        compress = path.endswith(".gz")
    if compress:
        data = gzip.compress(data, mtime=0)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
