"""npvae: variational autoencoders in NumPy, every gradient written by hand and proven.

Quick start::

    import numpy as np
    from npvae import VAE, Adam

    vae = VAE(input_dim=64, latent_dim=4, hidden=(32,))
    opt = Adam(vae.params, lr=1e-3)
    loss, parts = vae.loss_and_grad(x_batch)   # -ELBO, and the gradient in vae.params.grad
    opt.step()
"""

from npvae.core.activations import (
    ELU,
    GELU,
    Identity,
    LeakyReLU,
    ReLU,
    Sigmoid,
    SiLU,
    Softplus,
    Tanh,
)
from npvae.core.layers import MLP, Dense
from npvae.core.likelihoods import Bernoulli, GaussianDiagonal, GaussianFixed, GaussianScalar
from npvae.core.model import VAEModel
from npvae.core.optim import SGD, Adam, global_norm
from npvae.core.params import ParamBuffer
from npvae.training.estimator import VAE
from npvae.training.trainer import Trainer, TrainingDiverged

load = VAE.load

__version__ = "0.1.0"

__all__ = [
    "VAE", "VAEModel", "load", "Trainer", "TrainingDiverged", "Adam", "SGD", "global_norm",
    "ParamBuffer", "Dense", "MLP",
    "Identity", "ReLU", "LeakyReLU", "ELU", "Tanh", "Sigmoid", "Softplus", "SiLU", "GELU",
    "Bernoulli", "GaussianFixed", "GaussianScalar", "GaussianDiagonal", "__version__",
]
