"""Platform plumbing, kept apart from the math: the OpenBLAS thread callback
(:mod:`~npvae.plumbing.blas_pool`), the sequential MKL or OpenBLAS GEMM split over Numba's
threads (:mod:`~npvae.plumbing.gemm`, :mod:`~npvae.plumbing.mkl`,
:mod:`~npvae.plumbing.openblas`), the x86 flush-to-zero switch
(:mod:`~npvae.plumbing.fpmode`), NumPy's private ufunc-loop access
(:mod:`~npvae.plumbing.ufunc_loop`) and the thread count fitted to the free cores
(:mod:`~npvae.plumbing.cores`).

Each is an optimisation: the kernels compute the same results without it. All of them sit
behind one capability probe, :func:`capabilities` (:mod:`~npvae.plumbing.probe`): a piece
that fails on this system (a new NumPy, OpenBLAS, MKL or Numba release) is left off with
one warning, and ``NPVAE_PLUMBING=0`` turns them all off. Nothing here imports the rest of
npvae.
"""

from npvae.plumbing.probe import PIECES, Capability, capabilities, enabled

__all__ = ["PIECES", "Capability", "capabilities", "enabled"]
