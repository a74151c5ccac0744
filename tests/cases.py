"""The instances every gradient test runs over, one entry per public class.

``tests/test_registry.py`` fails if the package gains a layer, activation, likelihood class
or training objective that has no entry here, so nothing ships without a gradient check.
"""

from npvae.core.activations import ELU, Identity, LeakyReLU, ReLU, Sigmoid, Softplus, Tanh
from npvae.core.likelihoods import Bernoulli, GaussianDiagonal, GaussianFixed, GaussianScalar

ACTIVATION_CASES = {
    Identity: [Identity()],
    ReLU: [ReLU()],
    LeakyReLU: [LeakyReLU(0.01), LeakyReLU(0.3), LeakyReLU(2.0)],
    ELU: [ELU(1.0), ELU(0.5)],
    Tanh: [Tanh()],
    Sigmoid: [Sigmoid()],
    Softplus: [Softplus()],
}
ACTIVATIONS = [a for cases in ACTIVATION_CASES.values() for a in cases]
KINKED = (ReLU, LeakyReLU)  # finite differences are only valid away from a = 0


def is_kinked(act):
    """Not differentiable at a = 0: the ReLU family, and ELU unless alpha = 1."""
    return isinstance(act, KINKED) or (isinstance(act, ELU) and act.param != 1.0)
SMOOTH_NAMES = ["tanh", "sigmoid", "softplus", "identity", "elu"]

LIKELIHOOD_CASES = {
    Bernoulli: [Bernoulli()],
    GaussianFixed: [GaussianFixed(1.0), GaussianFixed(0.3)],
    GaussianScalar: [GaussianScalar(1.0), GaussianScalar(2.0)],
    GaussianDiagonal: [GaussianDiagonal(1.0), GaussianDiagonal(0.5)],
}
LIKELIHOOD_NAMES = ["bernoulli", "gaussian", "gaussian-scalar", "gaussian-diag"]

# layer classes and the test module that checks their gradients
LAYER_CASES = {"Dense": "tests/test_layers.py", "MLP": "tests/test_layers.py"}

# training objectives and the test module that checks their gradients
OBJECTIVE_CASES = {"elbo": "tests/test_model_grad.py", "iwae": "tests/test_objectives.py",
                   "iwae-dreg": "tests/test_objectives.py"}
