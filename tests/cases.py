"""The instances every gradient test runs over, one entry per public class.

``tests/test_registry.py`` fails if the package gains a layer, activation or likelihood
class that has no entry here, so nothing ships without a gradient check. The name lists
below are read from the registries (``npvae.core.activations.ACTIVATIONS``,
``npvae.core.likelihoods.LIKELIHOODS``), not copied.
"""

from npvae.core import activations as act
from npvae.core.likelihoods import LIKELIHOODS as LIKELIHOOD_REGISTRY
from npvae.core.likelihoods import Bernoulli, GaussianDiagonal, GaussianFixed, GaussianScalar

ACTIVATION_CASES = {
    act.Identity: [act.Identity()],
    act.ReLU: [act.ReLU()],
    act.LeakyReLU: [act.LeakyReLU(0.01), act.LeakyReLU(0.3), act.LeakyReLU(2.0)],
    act.ELU: [act.ELU(1.0), act.ELU(0.5)],
    act.Tanh: [act.Tanh()],
    act.Sigmoid: [act.Sigmoid()],
    act.Softplus: [act.Softplus()],
    act.SiLU: [act.SiLU()],
    act.GELU: [act.GELU()],
}
ACTIVATIONS = [a for cases in ACTIVATION_CASES.values() for a in cases]
KINKED = (act.ReLU, act.LeakyReLU)  # finite differences are only valid away from a = 0
# not twice differentiable at a = 0 (ELU: f'' jumps even at alpha 1)
NOT_TWICE_DIFFERENTIABLE = (act.ReLU, act.LeakyReLU, act.ELU)


def is_kinked(a):
    """Not differentiable at a = 0: the ReLU family, and ELU unless alpha = 1."""
    return isinstance(a, KINKED) or (isinstance(a, act.ELU) and a.param != 1.0)


ACTIVATION_REGISTRY = act.ACTIVATIONS
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
