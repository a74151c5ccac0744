"""The product layer: the training loop, checkpoints and the :class:`~npvae.VAE` estimator.

Built on :mod:`npvae.core` and :mod:`npvae.inference`; the applications and the CLI build
on it.
"""
