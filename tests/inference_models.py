"""Models with known posteriors for the inference tests: probabilistic PCA as a VAE.

A VAE with no hidden layers and a fixed-variance Gaussian likelihood decodes
``x = z @ W + b + sigma * noise`` with ``W`` of shape (Z, D): probabilistic PCA. With
``M = W W^T + sigma^2 I`` (Z x Z) its posterior is

    p(z | x) = N((x - b) W^T M^-1, sigma^2 M^-1)

and its marginal ``p(x) = N(b, W^T W + sigma^2 I)`` (docs/math.md, section 12).
"""

import numpy as np
from scipy.stats import multivariate_normal

from npvae.core.model import VAEModel


class PPCA:
    """A pPCA decoder (and, optionally, the encoder of its exact posterior mean) with its
    closed forms; ``orthogonal=True`` gives W orthogonal rows, so a diagonal posterior;
    ``w`` sets W."""

    def __init__(self, z=2, d=5, variance=0.3, seed=0, dtype="float64", orthogonal=False,
                 exact_encoder=False, scale=1.0, w=None):
        rng = np.random.default_rng(seed)
        self.model = VAEModel(d, z, hidden=(), likelihood="gaussian", variance=variance,
                              dtype=dtype, seed=seed)
        if w is not None:
            w = np.asarray(w, np.float64)
        elif orthogonal:
            q, _ = np.linalg.qr(rng.standard_normal((d, z)))
            w = (q * np.linspace(0.7, 2.0, z)).T
        else:
            w = rng.standard_normal((z, d)) * scale
        dec = self.model.decoder.layers[0]
        dec.W[...], dec.b[...] = w, rng.standard_normal(d)
        self.W, self.b = dec.W.astype(np.float64), dec.b.astype(np.float64)
        self.variance = variance
        m = self.W @ self.W.T + variance * np.eye(z)
        self.post_cov = variance * np.linalg.inv(m)
        self.gain = self.W.T @ np.linalg.inv(m)  # (D, Z): mean = (x - b) @ gain
        if exact_encoder:  # mu(x) exact; log-variance the exact diagonal
            enc = self.model.encoder.layers[0]
            enc.W[...] = 0
            enc.W[:, :z] = self.gain
            enc.b[:z] = -self.b @ self.gain
            enc.b[z:] = np.log(np.diag(self.post_cov))
        self.rng = rng

    def data(self, n):
        z = self.rng.standard_normal((n, len(self.W)))
        noise = np.sqrt(self.variance) * self.rng.standard_normal((n, self.W.shape[1]))
        return z @ self.W + self.b + noise

    def post_mean(self, x):
        return (x - self.b) @ self.gain

    def log_px(self, x):
        cov = self.W.T @ self.W + self.variance * np.eye(self.W.shape[1])
        return multivariate_normal(self.b, cov).logpdf(x)
