"""Find the OpenBLAS that NumPy calls, and its thread-callback setter (no Numba here: this
runs before Numba's thread pool starts; see :mod:`npvae.plumbing.blas_pool`)."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np


def mapped_files():
    """Sorted paths of the files this process has mapped (``/proc/self/maps``), or None
    where that cannot be read (not Linux)."""
    try:
        with open("/proc/self/maps") as f:
            fields = (line.split(maxsplit=5) for line in f)
            return sorted({row[5].strip() for row in fields if len(row) == 6})
    except OSError:
        return None


def numpy_openblas():
    """``(library, setter)`` of the OpenBLAS bundled with NumPy, or None.

    The library is found among the files this process has mapped (``/proc/self/maps``)
    under NumPy's ``numpy.libs`` folder; the setter's name carries the build's symbol
    prefix and suffix (``scipy_openblas_..._64_``, or plain).
    """
    libs_dir = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    paths = mapped_files()
    if paths is None:
        return None
    for path in paths:
        p = Path(path)
        if p.parent != libs_dir or "openblas" not in p.name:
            continue
        lib = ctypes.CDLL(str(p))
        for prefix, suffix in (("scipy_", "64_"), ("scipy_", ""), ("", "64_"), ("", "")):
            name = f"{prefix}openblas_set_threads_callback_function{suffix}"
            if hasattr(lib, name):
                setter = getattr(lib, name)
                setter.argtypes, setter.restype = [ctypes.c_void_p], None
                return lib, setter
    return None


