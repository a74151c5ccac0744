"""What VAEs are used for, built on :class:`npvae.VAE`.

* Conditional generation: :func:`one_hot`, :func:`class_samples` (and ``VAE(cond_dim=...)``).
* De-noising: :func:`corrupt` (and ``VAE.fit(corruption=...)``, ``VAE.denoise``).
* In-painting: :func:`inpaint`, :func:`inpaint_report`, :func:`half_mask`, :func:`random_mask`.
* Latent space: :func:`interpolate`, :func:`slerp`, :func:`traverse`, :func:`latent_map`,
  :func:`pca`.
* Disentanglement: :func:`mig` (Mutual Information Gap) and its parts.

Importing this package loads NumPy only; matplotlib is imported when a figure is drawn.
"""

from npvae.apps.conditional import CenteredKNN, class_samples, one_hot
from npvae.apps.disentangle import (
    discretize,
    entropy,
    mig,
    mutual_info_matrix,
    mutual_information,
)
from npvae.apps.inpaint import half_mask, inpaint, inpaint_report, random_mask
from npvae.apps.latent import LatentMap, interpolate, latent_map, lerp, pca, slerp, traverse
from npvae.training.corruption import CORRUPTIONS, corrupt

__all__ = [
    "one_hot", "class_samples", "CenteredKNN", "CORRUPTIONS", "corrupt",
    "inpaint", "inpaint_report", "half_mask", "random_mask",
    "interpolate", "slerp", "lerp", "traverse", "pca", "latent_map", "LatentMap",
    "mig", "discretize", "entropy", "mutual_information", "mutual_info_matrix",
]
