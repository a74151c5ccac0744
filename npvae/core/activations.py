"""Activation functions: the public name of :mod:`npvae.kernels.activations`.

The definitions and their registry live with the kernels, which implement them and sit
below the core (the core calls the kernels; the kernels import nothing from the core).
See that module for the table of activations and how to add one.
"""

from npvae.kernels.activations import *  # noqa: F403 (every registered class)
from npvae.kernels.activations import __all__  # noqa: F401
