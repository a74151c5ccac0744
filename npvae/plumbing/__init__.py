"""Platform plumbing, kept apart from the math: the OpenBLAS thread callback
(:mod:`~npvae.plumbing.blas_pool`), the Intel MKL binding (:mod:`~npvae.plumbing.mkl`,
:mod:`~npvae.plumbing.gemm`), the x86 flush-to-zero switch (:mod:`~npvae.plumbing.fpmode`)
and NumPy's private ufunc-loop access (:mod:`~npvae.plumbing.ufunc_loop`).

Each is an optimisation: the kernels compute the same results without it.
"""
