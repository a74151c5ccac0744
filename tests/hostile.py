"""Builders of damaged and hostile files, shared by the hostile-input tests and the fuzz tests.

Each helper edits a real file the way an attacker (or a failing disk) would: raw bytes of the
zip headers, the JSON metadata with its CRCs kept consistent, the .npy headers of members.
"""

import io
import json
import os
import struct
import threading
import tracemalloc
import zipfile
from contextlib import contextmanager

import numpy as np

META = "__meta__.json.npy"


def npy_bytes(a, header_shape=None, descr=None):
    """The .npy bytes of ``a``; ``header_shape``/``descr`` make the header lie."""
    a = np.asarray(a)
    buf = io.BytesIO()
    if header_shape is None and descr is None:
        np.lib.format.write_array(buf, a, allow_pickle=True)
        return buf.getvalue()
    d = {"descr": descr or np.lib.format.dtype_to_descr(a.dtype), "fortran_order": False,
         "shape": tuple(a.shape if header_shape is None else header_shape)}
    np.lib.format.write_array_header_1_0(buf, d)
    return buf.getvalue() + np.ascontiguousarray(a).tobytes()


def read_entries(path):
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def write_entries(path, entries, compression=zipfile.ZIP_STORED):
    """Write a zip of raw entries (zip CRCs consistent with the bytes given)."""
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for n, b in entries.items():
            zf.writestr(n, b)


def meta_of(entries):
    return json.loads(np.load(io.BytesIO(entries[META])).tobytes())


def meta_bytes(doc=None, text=None):
    text = json.dumps(doc) if text is None else text
    return npy_bytes(np.frombuffer(text.encode(), dtype=np.uint8))


def edit_meta(path, change, compression=zipfile.ZIP_STORED):
    """Rewrite the checkpoint with ``change(meta)`` applied to its metadata document."""
    entries = read_entries(path)
    meta = meta_of(entries)
    out = change(meta)
    entries[META] = meta_bytes(meta if out is None else out)
    write_entries(path, entries, compression)


def patch_member(path, name, *, flags=None, method=None, file_size=None):
    """Set the general-purpose flags, compression method or uncompressed size of member
    ``name`` in both its local and its central-directory header (raw bytes)."""
    data = bytearray(open(path, "rb").read())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
        start_dir = zf.start_dir
    local = info.header_offset
    assert data[local:local + 4] == b"PK\x03\x04"
    pos = start_dir
    while data[pos:pos + 4] == b"PK\x01\x02":
        n, m, k = struct.unpack("<HHH", data[pos + 28:pos + 34])
        if data[pos + 46:pos + 46 + n].decode() == name:
            break
        pos += 46 + n + m + k
    else:
        raise AssertionError(f"{name} not in the central directory")
    for off, value, fmt in ((6, flags, "<H"), (8, method, "<H"), (22, file_size, "<I")):
        if value is not None:
            struct.pack_into(fmt, data, local + off, value)
            struct.pack_into(fmt, data, pos + off + 2, value)
    open(path, "wb").write(bytes(data))


@contextmanager
def peak_memory(limit_bytes):
    """Fail if the block's Python + NumPy allocations peak above ``limit_bytes``."""
    tracemalloc.start()
    try:
        yield
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < limit_bytes, f"peak allocation {peak} bytes, limit {limit_bytes}"


def finishes(fn, seconds=20.0):
    """Run ``fn`` in a thread; return its exception (or None); fail if it hangs."""
    out = {}

    def run():
        try:
            fn()
        except BaseException as exc:  # noqa: B036 - reported to the caller
            out["exc"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"{fn} hung for {seconds} s"
    return out.get("exc")


def unblock_fifo(path):
    """Open a FIFO for writing and close it: wakes a reader blocked in open()."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
    except OSError:
        pass
