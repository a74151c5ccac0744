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


class LoadFailure(str):
    """A reason a library is not used that is a failure (it is there but would not load or
    set up), not an absence: :func:`npvae.plumbing.capabilities` warns about these."""


PREFIXES = (("scipy_", "64_"), ("scipy_", ""), ("", "64_"), ("", ""))  # the builds' names


def _numpy_openblas_lib():
    """``(path, CDLL)`` of the OpenBLAS bundled with NumPy (found among the files this
    process has mapped, under NumPy's ``numpy.libs`` folder), or None."""
    libs_dir = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    for path in mapped_files() or []:
        p = Path(path)
        if p.parent == libs_dir and "openblas" in p.name:
            return p, ctypes.CDLL(str(p))
    return None


def _symbol(lib, name):
    """``(function, prefix, suffix)`` of ``name`` under the build's symbol decoration."""
    for prefix, suffix in PREFIXES:
        fn = getattr(lib, f"{prefix}{name}{suffix}", None)
        if fn is not None:
            return fn, prefix, suffix
    return None, None, None


def numpy_openblas():
    """``(library, setter)`` of the OpenBLAS bundled with NumPy, or None.

    The setter is ``openblas_set_threads_callback_function``, its name carrying the
    build's symbol prefix and suffix (``scipy_openblas_..._64_``, or plain).
    """
    found = _numpy_openblas_lib()
    if found is None:
        return None
    setter = _symbol(found[1], "openblas_set_threads_callback_function")[0]
    if setter is None:
        return None
    setter.argtypes, setter.restype = [ctypes.c_void_p], None
    return found[1], setter


class PrivateOpenBlas:
    """A copy of OpenBLAS of npvae's own, as a sequential GEMM for
    :mod:`npvae.plumbing.gemm`: the ``scipy-openblas32`` wheel's library (the OpenBLAS NumPy
    and SciPy are built with, LP64), loaded apart from NumPy's copy and set to one thread.

    Why not NumPy's copy: calling it from npvae's threads needs its thread count set to 1
    around each call (``openblas_set_num_threads_local``), and that setter changes the
    count for the whole library: a threaded ``np.dot`` running in another Python thread
    then gave wrong products (hundreds in three seconds, tested). A library of its own has
    its own count, which stays 1.

    Attributes: ``name`` ("openblas"), ``gemm`` (addresses of ``cblas_sgemm`` and
    ``cblas_dgemm`` by dtype), ``version``, ``path``, ``threads`` (its thread count, a
    ctypes function: 84 ns a call) and :meth:`single_threaded`.

    threadpoolctl finds this copy like any other OpenBLAS in the process, so
    ``threadpool_limits(2)`` (which scikit-learn and users call) sets it to 2 threads; two
    npvae threads calling it at once then ran a training step 80x slower (120 ms against
    1.5 ms at batch 128, measured) and with other bits. So every product first checks the
    count and puts it back to 1.
    """

    name = "openblas"

    def __init__(self, path, lib, prefix):
        self.path, self._lib = str(path), lib
        addr = ctypes.c_void_p
        self.gemm = {np.dtype(np.float32): ctypes.cast(getattr(lib, f"{prefix}cblas_sgemm"),
                                                       addr).value,
                     np.dtype(np.float64): ctypes.cast(getattr(lib, f"{prefix}cblas_dgemm"),
                                                       addr).value}
        self.threads = getattr(lib, f"{prefix}openblas_get_num_threads")
        self._set_threads = getattr(lib, f"{prefix}openblas_set_num_threads")
        self.threads.restype, self._set_threads.argtypes = ctypes.c_int, [ctypes.c_int]
        config = getattr(lib, f"{prefix}openblas_get_config")
        config.restype = ctypes.c_char_p
        self.version = config().decode(errors="replace").strip()

    def single_threaded(self):
        """Set the thread count back to 1 if something changed it; True if it was 1."""
        if self.threads() == 1:
            return True
        self._set_threads(1)
        return False


def private_library():
    """Path of the ``scipy-openblas32`` wheel's library, or None (not installed)."""
    import importlib.util

    spec = importlib.util.find_spec("scipy_openblas32")  # found, not imported
    if spec is None or spec.origin is None:
        return None
    libs = sorted((Path(spec.origin).parent / "lib").glob("libscipy_openblas*"))
    return libs[0] if libs else None


_private = {}  # the one load_private() result of this process


def load_private():
    """``(PrivateOpenBlas, None)`` if npvae's own OpenBLAS can be used, else
    ``(None, why)``; loaded once per process."""
    if "result" not in _private:
        _private["result"] = _load_private()
    return _private["result"]


def _load_private():
    import os

    path = private_library()
    if path is None:
        return None, "the scipy-openblas32 wheel is not installed (pip install scipy-openblas32)"
    if str(path) in (mapped_files() or []):
        return None, (f"{path} is already loaded in this process, by another library; npvae "
                      "leaves its thread count alone")
    prefix = "scipy_"
    try:
        lib = ctypes.CDLL(str(path), mode=getattr(os, "RTLD_LOCAL", 0))
        found = PrivateOpenBlas(path, lib, prefix)
    except (OSError, AttributeError) as e:
        return None, LoadFailure(f"{path} could not be loaded: {e}")
    # Set after loading: loaded with OPENBLAS_NUM_THREADS=1 instead, concurrent calls from
    # several threads ran at 1-10 GFLOP/s (measured), set now at 360.
    found.single_threaded()
    if found.threads() != 1:
        return None, LoadFailure(f"{path}: its thread count could not be set to 1")
    return found, None


def cpu_vendor():
    """The CPU's vendor string (``GenuineIntel``, ``AuthenticAMD``, ...) or None."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None
