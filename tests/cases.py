"""The instances every gradient test runs over, one entry per public class.

``tests/test_registry.py`` fails if the package gains a layer, activation or likelihood
class that has no entry here, so nothing ships without a gradient check. The name lists
below are read from the registries (``npvae.core.activations.ACTIVATIONS``,
``npvae.core.likelihoods.LIKELIHOODS``), not copied.
"""

from npvae.core.activations import (
    ACTIVATIONS as ACTIVATION_REGISTRY,
)
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
from npvae.core.likelihoods import LIKELIHOODS as LIKELIHOOD_REGISTRY
from npvae.core.likelihoods import Bernoulli, GaussianDiagonal, GaussianFixed, GaussianScalar

ACTIVATION_CASES = {
    Identity: [Identity()],
    ReLU: [ReLU()],
    LeakyReLU: [LeakyReLU(0.01), LeakyReLU(0.3), LeakyReLU(2.0)],
    ELU: [ELU(1.0), ELU(0.5)],
    Tanh: [Tanh()],
    Sigmoid: [Sigmoid()],
    Softplus: [Softplus()],
    SiLU: [SiLU()],
    GELU: [GELU()],
}
ACTIVATIONS = [a for cases in ACTIVATION_CASES.values() for a in cases]
KINKED = (ReLU, LeakyReLU)  # finite differences are only valid away from a = 0
NOT_TWICE_DIFFERENTIABLE = (ReLU, LeakyReLU, ELU)  # at a = 0 (ELU: f'' jumps even at alpha 1)


def is_kinked(act):
    """Not differentiable at a = 0: the ReLU family, and ELU unless alpha = 1."""
    return isinstance(act, KINKED) or (isinstance(act, ELU) and act.param != 1.0)


ACTIVATION_NAMES = list(ACTIVATION_REGISTRY)
# differentiable everywhere with their default parameter
DIFFERENTIABLE_NAMES = [name for name, cls in ACTIVATION_REGISTRY.items()
                        if not is_kinked(cls())]
# twice differentiable everywhere: safe for the fourth-order stencil of check_model
SMOOTH_NAMES = [name for name, cls in ACTIVATION_REGISTRY.items()
                if not issubclass(cls, NOT_TWICE_DIFFERENTIABLE)]

LIKELIHOOD_CASES = {
    Bernoulli: [Bernoulli()],
    GaussianFixed: [GaussianFixed(1.0), GaussianFixed(0.3)],
    GaussianScalar: [GaussianScalar(1.0), GaussianScalar(2.0)],
    GaussianDiagonal: [GaussianDiagonal(1.0), GaussianDiagonal(0.5)],
}
LIKELIHOOD_NAMES = list(LIKELIHOOD_REGISTRY)

# layer classes and the test module that checks their gradients
LAYER_CASES = {"Dense": "tests/test_layers.py", "MLP": "tests/test_layers.py"}
