r"""Disentanglement: the Mutual Information Gap (MIG, Chen et al. 2018).

For a representation ``z`` (N, J) (usually the posterior means) and ground-truth factors
``v`` (N, K), each discrete:

1. Discretise every latent ``z_j`` into ``n_bins`` equal-width bins over its range.
2. For every pair, the empirical mutual information
   :math:`I(z_j; v_k) = \sum_{a,b} p(a,b) \log \frac{p(a,b)}{p(a)p(b)}` (nats).
3. Normalise by the factor's entropy :math:`H(v_k)`, so 1 means "z_j determines v_k".
4. For each factor, the gap between the largest and the second-largest normalised MI over
   the latents; MIG is the mean gap over the factors.

A representation that copies each factor into its own latent scores ~1; one where each
latent mixes several factors, or that ignores them, scores ~0. Factors that never vary
(entropy 0) are skipped. This is the histogram estimator of Locatello et al. (2019); the
finite-sample bias of an MI estimate is about ``(n_bins - 1)(K_k - 1) / (2N)`` nats.
"""

from __future__ import annotations

import numpy as np

__all__ = ["discretize", "entropy", "mutual_information", "mutual_info_matrix", "mig"]


def discretize(Z, n_bins=20):
    """Equal-width bin index (0 .. n_bins-1) of every column of ``Z`` over its own range;
    a constant column falls in bin 0. Returns int64 (N, J)."""
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim == 1:
        Z = Z[:, None]
    if Z.ndim != 2 or len(Z) == 0:
        raise ValueError(f"Z must have shape (N, J) with N >= 1, got {Z.shape}")
    if not np.all(np.isfinite(Z)):
        raise ValueError("Z contains NaN or inf")
    n_bins = int(n_bins)
    if n_bins < 1:
        raise ValueError(f"n_bins must be positive, got {n_bins}")
    lo, hi = Z.min(axis=0), Z.max(axis=0)
    width = np.where(hi > lo, hi - lo, 1.0)
    idx = np.floor((Z - lo) / width * n_bins).astype(np.int64)
    return np.clip(idx, 0, n_bins - 1)


def _codes(v):
    """Map any discrete values to 0..K-1."""
    return np.unique(np.asarray(v), return_inverse=True)[1].ravel()


def entropy(v):
    """Empirical entropy (nats) of a discrete variable."""
    counts = np.bincount(_codes(v)).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def mutual_information(a, b):
    """Empirical mutual information (nats) of two discrete variables of equal length."""
    a, b = _codes(a), _codes(b)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same length, got {a.size} and {b.size}")
    ka, kb = a.max() + 1, b.max() + 1
    joint = np.bincount(a * kb + b, minlength=ka * kb).reshape(ka, kb) / a.size
    pa, pb = joint.sum(axis=1), joint.sum(axis=0)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / np.outer(pa, pb)[nz])).sum())


def mutual_info_matrix(Z, factors, n_bins=20):
    """``I(z_j; v_k)`` for every latent j and factor k, (J, K), with ``z`` discretised
    into ``n_bins`` equal-width bins and the factors taken as discrete."""
    zd = discretize(Z, n_bins)
    V = np.asarray(factors)
    if V.ndim == 1:
        V = V[:, None]
    if V.shape[0] != zd.shape[0]:
        raise ValueError(f"Z has {zd.shape[0]} rows but factors has {V.shape[0]}")
    return np.array([[mutual_information(zd[:, j], V[:, k]) for k in range(V.shape[1])]
                     for j in range(zd.shape[1])])


def mig(Z, factors, *, n_bins=20, return_details=False):
    """Mutual Information Gap of representation ``Z`` (N, J) for discrete ``factors`` (N, K).

    Parameters
    ----------
    Z : array_like (N, J)
        e.g. ``model.transform(X)``, the posterior means. Needs J >= 2.
    factors : array_like (N, K)
        Ground-truth factors, each discrete (class indices or any repeated values, e.g. a
        sprite set's ``factor_classes_test``).
    n_bins : int, default 20
    return_details : bool, default False

    Returns
    -------
    float
        MIG in [0, 1].
    dict, with ``return_details``
        ``mi`` (J, K) in nats, ``entropy`` (K,), ``normalized_mi`` (J, K), ``gap`` (K,) per
        factor (NaN for a constant factor), ``best_latent`` (K,).
    """
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2 or Z.shape[1] < 2:
        raise ValueError(f"Z must have shape (N, J) with J >= 2 latents, got {Z.shape}")
    V = np.asarray(factors)
    if V.ndim == 1:
        V = V[:, None]
    mi = mutual_info_matrix(Z, V, n_bins)
    H = np.array([entropy(V[:, k]) for k in range(V.shape[1])])
    ok = H > 0
    if not ok.any():
        raise ValueError("every factor is constant; MIG is undefined")
    norm = np.full_like(mi, np.nan)
    norm[:, ok] = mi[:, ok] / H[ok]
    top2 = -np.sort(-norm[:, ok], axis=0)[:2]
    gap = np.full(V.shape[1], np.nan)
    gap[ok] = top2[0] - top2[1]
    score = float(np.mean(gap[ok]))
    if not return_details:
        return score
    best = np.full(V.shape[1], -1)
    best[ok] = np.argmax(norm[:, ok], axis=0)
    return score, {"mi": mi, "entropy": H, "normalized_mi": norm, "gap": gap,
                   "best_latent": best}
