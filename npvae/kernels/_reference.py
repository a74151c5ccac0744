r"""Plain-NumPy reference kernels: the specification, the fallback and the test oracle.

This module is the numpy backend's namespace: it gathers the kernels from one module per
concept (``_reference_dense``, ``_reference_kl``, ``_reference_iwae``,
``_reference_likelihood``, ``_reference_optim``, ``_reference_samplers``), each mirrored by a
``_numba_*`` module of the same concept. Every kernel has a Numba twin of the same name and
signature in :mod:`npvae.kernels._numba`; the tests check that the two agree in float32 and
float64. These are written to be read: each one is the math of
:doc:`docs/math.md <../docs/math>` in vectorised NumPy. They allocate temporaries freely; the
Numba versions do not.

Conventions shared by both backends:

* Outputs are written into arrays the caller passes (``out`` arguments, or in place);
  the return value, where there is one, is a Python float.
* ``h`` is the encoder's output ``(N, 2Z)``: columns ``[:Z]`` are ``mu``, ``[Z:]`` are
  ``logvar``.
* Decoder rows are sample-major: row ``r`` of an ``(L*N, .)`` array belongs to data point
  ``r % N``.
"""

from __future__ import annotations

from npvae.kernels._floats import LOG_2PI, flush_limits  # noqa: F401 (read from here)
from npvae.kernels._reference_dense import (  # noqa: F401
    act_backward,
    bias_act,
    bias_act_pre,
    matmul,
)
from npvae.kernels._reference_iwae import (  # noqa: F401 (and two helpers, not kernels)
    importance_weights,
    iwae_backward,
    iwae_weights,
    log_prior_ratio,
)
from npvae.kernels._reference_kl import (  # noqa: F401 (gaussian_kl: not a kernel)
    gaussian_kl,
    sample_kl,
    sample_kl_backward,
)
from npvae.kernels._reference_likelihood import (  # noqa: F401
    bernoulli_nll,
    bernoulli_nll_rows,
    gaussian_nll,
    gaussian_nll_rows,
    sigmoid,
)
from npvae.kernels._reference_optim import (  # noqa: F401
    adam_step,
    adam_step_outer,
    sgd_step,
    sum_squares,
)
from npvae.kernels._reference_samplers import (  # noqa: F401
    leapfrog_drift,
    leapfrog_kick,
    leapfrog_kick_drift,
    normal_log_density,
    select_rows,
)
