"""Reading ``.npy`` and ``.npz`` files without trusting them.

``np.load`` believes what a file says: a header claiming 10^12 elements is allocated, a zip
member is inflated to whatever it claims, a FIFO blocks forever, and a damaged archive raises
any of half a dozen exception types. The readers here check every size a file states against
the sizes it really has before allocating, read in bounded chunks, accept only regular
files, never unpickle, and raise one type, :class:`UnsafeFileError` (a ``ValueError``), with a
message that names the file and the problem.

Checks, in order: the path is a regular file (opened with ``O_NONBLOCK``, so a FIFO cannot
hang the open); the zip's members are unencrypted, stored or deflated, named ``*.npy``, not
duplicated, and lie inside the file; a deflated member claims at most ``MAX_DEFLATE_RATIO``
times its compressed size (deflate cannot do better, so more is a lie); a ``.npy`` header is
at most ``MAX_HEADER_BYTES`` long, of a plain dtype, and its shape times its item size is
exactly the member's (or file's) size. Only then is an array allocated, and its bytes are
read in chunks, with the zip's CRC-32 checked at the end.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import tokenize
import zipfile
import zlib

import numpy as np

__all__ = ["UnsafeFileError", "open_regular", "NpzReader", "read_npy", "NpyHeader"]

MAX_HEADER_BYTES = 1 << 16
MAX_MEMBERS = 4096
MAX_DEFLATE_RATIO = 1032  # deflate's best case: 258 bytes per 2-bit code, plus slack
ALLOWED_KINDS = "biufcSUmM"  # stored without pickle (datetimes too, refused by the users)
_CHUNK = 1 << 20
# what zipfile, zlib and numpy raise on a damaged archive
READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError,
               ValueError, RuntimeError, NotImplementedError, struct.error, OverflowError,
               KeyError, IndexError, TypeError, SyntaxError, tokenize.TokenError)


class UnsafeFileError(ValueError):
    """A ``.npy``/``.npz`` file is damaged, not what it claims, or not a regular file."""


class NpyHeader:
    """The parsed header of one ``.npy`` array: shape, dtype, order and sizes in bytes."""

    __slots__ = ("shape", "dtype", "fortran", "header_bytes", "data_bytes")

    def __init__(self, shape, dtype, fortran, header_bytes):
        self.shape, self.dtype, self.fortran = tuple(shape), dtype, bool(fortran)
        self.header_bytes = header_bytes
        count = 1
        for s in self.shape:
            count *= s
        self.data_bytes = count * dtype.itemsize

    @property
    def count(self):
        return self.data_bytes // self.dtype.itemsize if self.dtype.itemsize else 0


def open_regular(path):
    """Open ``path`` for binary reading if it is a regular file; raise UnsafeFileError if
    it is a FIFO, device, socket or folder (FileNotFoundError if it does not exist)."""
    path = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            what = ("a folder" if stat.S_ISDIR(mode) else "a FIFO (named pipe)"
                    if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode)
                    or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else
                    "not a regular file")
            raise UnsafeFileError(f"{path} is {what}, not a regular file; pass a file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _read_exact(fp, n, where):
    data = fp.read(n)
    if len(data) != n:
        raise UnsafeFileError(f"{where} is truncated: expected {n} more bytes, got {len(data)}")
    return data


def read_header(fp, where):
    """Parse a ``.npy`` header from ``fp`` (positioned at its start), reading at most
    ``MAX_HEADER_BYTES``; refuse object, structured and sub-array dtypes."""
    magic = _read_exact(fp, 8, where)
    if magic[:6] != np.lib.format.MAGIC_PREFIX:
        raise UnsafeFileError(f"{where} is not a .npy array (it starts with {magic[:6]!r})")
    major, minor = magic[6], magic[7]
    if (major, minor) not in ((1, 0), (2, 0), (3, 0)):
        raise UnsafeFileError(f"{where} has .npy format version {major}.{minor}; this reader "
                              "knows 1.0, 2.0 and 3.0")
    width = 2 if major == 1 else 4
    length = int.from_bytes(_read_exact(fp, width, where), "little")
    if length > MAX_HEADER_BYTES:
        raise UnsafeFileError(f"{where} has a {length}-byte .npy header; more than "
                              f"{MAX_HEADER_BYTES} is not a real array header")
    text = _read_exact(fp, length, where)
    try:
        reader = np.lib.format.read_array_header_1_0 if major == 1 \
            else np.lib.format.read_array_header_2_0
        if major == 3:  # 3.0 is 2.0 with a UTF-8 header; structured names only need it
            text = text.decode("utf-8").encode("latin1")
        shape, fortran, dtype = reader(io.BytesIO(length.to_bytes(width, "little") + text),
                                       max_header_size=MAX_HEADER_BYTES)
    except (ValueError, TypeError, SyntaxError, UnicodeError, RecursionError, MemoryError,
            tokenize.TokenError, OverflowError, KeyError, IndexError) as exc:
        # numpy parses the header with ast and, for old headers, tokenize (found by fuzzing)
        raise UnsafeFileError(f"{where} has a damaged .npy header: {_short(exc)}") from None
    if dtype.hasobject:
        raise UnsafeFileError(f"{where} holds Python objects (an object array), which npvae "
                              "will not unpickle: it never unpickles, since that can run "
                              "arbitrary code; save a numeric array instead, e.g. "
                              "np.save(path, np.asarray(x, dtype=np.float32))")
    if dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in ALLOWED_KINDS:
        raise UnsafeFileError(f"{where} has dtype {dtype}; only plain bool, integer, float, "
                              "complex and string arrays are read")
    if len(shape) > 64 or any(not isinstance(s, int) or s < 0 for s in shape):
        raise UnsafeFileError(f"{where} has an invalid shape {shape!r}")
    return NpyHeader(shape, dtype, fortran, 8 + width + length)


def read_data(fp, header, where):
    """Allocate ``header``'s array and fill it from ``fp`` in chunks; the stream must end
    exactly there (a zip member's CRC is checked as its last byte is read)."""
    a = np.empty(header.count, dtype=header.dtype)
    view = memoryview(a.view(np.uint8)) if a.size else memoryview(b"")
    pos, total = 0, header.data_bytes
    while pos < total:
        n = fp.readinto(view[pos:pos + _CHUNK])
        if not n:
            raise UnsafeFileError(f"{where} is truncated: {total - pos} of {total} data bytes "
                                  "are missing")
        pos += n
    if fp.read(1):
        raise UnsafeFileError(f"{where} has bytes after the array its header describes")
    if header.fortran:
        return a.reshape(header.shape[::-1]).T
    return a.reshape(header.shape)


def _short(exc):
    text = " ".join(str(exc).split())
    return (text[:200] + "...") if len(text) > 200 else (text or type(exc).__name__)


def read_npy(path, *, budget=None):
    """Read a ``.npy`` file; ``budget(nbytes, header)`` is called before allocating and may
    raise to refuse it."""
    path = os.fspath(path)
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        header = read_header(f, path)
        if header.header_bytes + header.data_bytes != size:
            raise UnsafeFileError(
                f"{path}: its header describes {header.data_bytes} data bytes (shape "
                f"{header.shape}, {header.dtype}) but the file has "
                f"{size - header.header_bytes}; it is truncated or damaged")
        if budget is not None:
            budget(header.data_bytes, header)
        return read_data(f, header, path)


class NpzReader:
    """The members of a ``.npz`` archive, checked before anything is read.

    Use as a context manager; ``names`` lists the arrays (member names without ``.npy``),
    :meth:`header` parses one array's header (reading only the header), :meth:`read` reads it.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self._file = open_regular(self.path)
        try:
            self._size = os.fstat(self._file.fileno()).st_size
            head = self._file.read(4)
            if head[:2] != b"PK":
                what = "an empty file" if not head else f"it starts with {head!r}"
                raise UnsafeFileError(f"{self.path} is not an .npz (zip) archive: {what}")
            self._file.seek(0)
            try:
                self._zip = zipfile.ZipFile(self._file)
            except READ_ERRORS as exc:
                raise UnsafeFileError(f"{self.path} is not a readable .npz (zip) archive, "
                                      f"truncated or damaged: {_short(exc)}") from None
            self._infos = self._check_members()
        except BaseException:
            self._file.close()
            raise

    def _check_members(self):
        infos = self._zip.infolist()
        if len(infos) > MAX_MEMBERS:
            raise UnsafeFileError(f"{self.path} has {len(infos)} members; more than "
                                  f"{MAX_MEMBERS} is not an array archive")
        out = {}
        for info in infos:
            name = info.filename
            where = f"{self.path}[{name!r}]"
            if not name.endswith(".npy"):
                raise UnsafeFileError(f"{where} is not a .npy member; an .npz holds only "
                                      ".npy arrays")
            if name[:-4] in out:
                raise UnsafeFileError(f"{where} appears twice in the archive; it is damaged")
            if info.flag_bits & 0x41:
                raise UnsafeFileError(f"{where} is encrypted; npvae reads only plain archives")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise UnsafeFileError(f"{where} uses compression method {info.compress_type}; "
                                      "only stored and deflated members are read")
            if info.header_offset + 30 + info.compress_size > self._size:
                raise UnsafeFileError(f"{where} extends past the end of the file "
                                      f"({self._size} bytes); the file is truncated")
            stored = info.compress_type == zipfile.ZIP_STORED
            if (stored and info.file_size != info.compress_size) or (
                    info.file_size > MAX_DEFLATE_RATIO * info.compress_size + 1024):
                raise UnsafeFileError(
                    f"{where} claims {info.file_size} bytes from {info.compress_size} stored "
                    "bytes, which no zip member can hold; the file is damaged or hostile")
            out[name[:-4]] = info
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self._zip.close()
        finally:
            self._file.close()

    @property
    def names(self):
        return list(self._infos)

    def member_size(self, name):
        """Uncompressed size in bytes of member ``name`` (its header plus its data)."""
        return self._infos[name].file_size

    def _open(self, name):
        try:
            return self._zip.open(self._infos[name])
        except READ_ERRORS as exc:
            raise UnsafeFileError(f"{self.path}[{name!r}] cannot be opened, the archive is "
                                  f"damaged: {_short(exc)}") from None

    def header(self, name):
        """Parse member ``name``'s ``.npy`` header and check it against the member's size."""
        where = f"{self.path}[{name!r}]"
        with self._open(name) as fp:
            try:
                header = read_header(fp, where)
            except UnsafeFileError:
                raise
            except READ_ERRORS as exc:
                raise UnsafeFileError(f"{where} is damaged: {_short(exc)}") from None
        if header.header_bytes + header.data_bytes != self._infos[name].file_size:
            raise UnsafeFileError(
                f"{where}: its header describes {header.data_bytes} data bytes (shape "
                f"{header.shape}, {header.dtype}) but the member holds "
                f"{self._infos[name].file_size - header.header_bytes}; the file is damaged")
        return header

    def read(self, name, header=None):
        """Read member ``name`` (``header`` from :meth:`header`, to skip parsing it twice)."""
        header = self.header(name) if header is None else header
        where = f"{self.path}[{name!r}]"
        with self._open(name) as fp:
            try:
                read_header(fp, where)
                return read_data(fp, header, where)
            except UnsafeFileError:
                raise
            except READ_ERRORS as exc:
                raise UnsafeFileError(f"{where} is damaged: {_short(exc)}") from None
