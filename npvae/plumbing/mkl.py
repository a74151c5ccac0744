"""Find Intel MKL's ``cblas_sgemm`` / ``cblas_dgemm`` in this environment (optional).

npvae's GEMMs go to NumPy's BLAS unless the ``mkl`` wheel is installed
(``pip install "npvae[mkl]"``). On the bench machine MKL's single-threaded sgemm was
1.2-1.35x faster than NumPy's OpenBLAS at the model's shapes (784x400 weights, batch 128),
and PyTorch's GEMMs are MKL's: see bench/README.md. :mod:`npvae.plumbing.gemm` calls it.

MKL is set up for that use, once, before its first call:

* the LP64 interface (32-bit integers), which is what the calls pass;
* the *sequential* threading layer: npvae splits a GEMM over Numba's own thread pool, one
  MKL call per thread, so MKL must start no threads of its own (a second OpenMP pool would
  spin on the cores the first one needs).

If an MKL is already loaded in this process (a NumPy or SciPy built on MKL, as conda's
are), it is left alone and not used, since its threading layer is process-wide: setting it
would make the other library's products single-threaded. :func:`load` says why.
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import numpy as np

from npvae.plumbing.openblas import LoadFailure, mapped_files

LP64 = 0  # MKL_INTERFACE_LP64
SEQUENTIAL = 1  # MKL_THREADING_SEQUENTIAL


def candidates():
    """Paths of ``libmkl_rt`` that the ``mkl`` wheel installs into this environment."""
    found = []
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        found += sorted(Path(prefix, "lib").glob("libmkl_rt.so*"), reverse=True)
    return found


class Mkl:
    """A loaded MKL: ``sgemm`` and ``dgemm`` (function addresses), ``gemm`` (the two by
    dtype), ``version`` and ``path``, and ``name`` ("mkl"), as :mod:`npvae.plumbing.gemm`
    asks of every provider."""

    name = "mkl"

    @staticmethod
    def single_threaded():
        """MKL's sequential layer runs one thread whatever its count says."""
        return True

    def __init__(self, path, lib):
        self.path, self._lib = str(path), lib
        self.sgemm = ctypes.cast(lib.cblas_sgemm, ctypes.c_void_p).value
        self.dgemm = ctypes.cast(lib.cblas_dgemm, ctypes.c_void_p).value
        self.gemm = {np.dtype(np.float32): self.sgemm, np.dtype(np.float64): self.dgemm}
        buf = ctypes.create_string_buffer(256)
        lib.MKL_Get_Version_String(buf, len(buf))
        self.version = buf.value.decode(errors="replace").strip()


def loaded_already():
    """Paths of MKL libraries this process has mapped."""
    return [p for p in mapped_files() or [] if "libmkl_" in Path(p).name]


def load():
    """``(Mkl, None)`` if MKL can be used here, else ``(None, why)``."""
    paths = candidates()
    if not paths:
        return None, "no libmkl_rt in this environment (pip install mkl)"
    there = loaded_already()
    if there:
        return None, (f"an MKL is already loaded in this process ({there[0]}), by another "
                      "library; npvae leaves its process-wide settings alone")
    path = paths[0]
    try:
        lib = ctypes.CDLL(str(path))
        set_interface, set_threading = lib.MKL_Set_Interface_Layer, lib.MKL_Set_Threading_Layer
        lib.cblas_sgemm, lib.cblas_dgemm, lib.MKL_Get_Version_String  # noqa: B018 (exist?)
    except (OSError, AttributeError) as e:
        return None, LoadFailure(f"{path} could not be loaded: {e}")
    set_interface.argtypes = set_threading.argtypes = [ctypes.c_int]
    if set_interface(LP64) != LP64:
        return None, f"{path}: MKL already uses another integer interface than LP64"
    if set_threading(SEQUENTIAL) != SEQUENTIAL:
        return None, (f"{path}: MKL was already set up with threads of its own in this "
                      "process; npvae uses it only single-threaded on its own pool")
    return Mkl(path, lib), None
