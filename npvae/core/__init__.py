"""The math core: parameters, activations, layers, likelihoods, the model and its gradient,
the optimizers and the finite-difference checker.

Nothing here imports from the training, application, CLI or plotting layers; the core
depends only on NumPy, SciPy and :mod:`npvae.kernels`.
"""
