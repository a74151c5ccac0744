"""Posterior inference and evaluation of a trained model: ELBO terms, the importance-weighted
estimate of log p(x), active units.

Uses the model's public methods only (``encode``, ``decode``, the likelihood's ``nll``).
"""
