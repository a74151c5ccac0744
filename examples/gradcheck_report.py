"""Print the measured relative error of every hand-written gradient: a table a learner can
rerun. Float64, central differences; see npvae/core/gradcheck.py and docs/math.md.

    python examples/gradcheck_report.py
"""

import _common  # noqa: F401  (lets the example run from a clone)
import numpy as np

from npvae.core.activations import ACTIVATIONS
from npvae.core.gradcheck import check_model, numerical_vjp, rel_error
from npvae.core.layers import Dense
from npvae.core.likelihoods import LIKELIHOODS
from npvae.core.model import VAEModel
from npvae.core.params import ParamBuffer


def dense_error(act, rng):
    """Every coordinate of dL/dx for a Dense layer, against central differences."""
    layer = Dense(4, 3, act, name="d")
    layer.bind(ParamBuffer(layer.param_shapes(), np.float64))
    layer.initialize(rng)
    layer.b[...] = rng.standard_normal(3)
    x = rng.standard_normal((5, 4)) + 0.05  # this seed keeps every unit off a ReLU kink
    y = layer.forward(x)
    u = rng.standard_normal(y.shape)
    return rel_error(layer.backward(u.copy(), x, y),
                     numerical_vjp(lambda x_: layer.forward(x_), x.copy(), u))


def main():
    rng = np.random.default_rng(0)
    print(f"{'what':45s} max relative error")
    for name in ACTIVATIONS:
        print(f"{'Dense + ' + name + ', dL/dx':45s} {dense_error(name, rng):.1e}")
    for lik in LIKELIHOODS:
        for act in ("tanh", "softplus", "sigmoid"):  # smooth: the 4th-order stencil needs it
            m = VAEModel(6, 3, hidden=(5, 4), activation=act, likelihood=lik, n_samples=2,
                         cond_dim=2, beta=0.7, dtype="float64", seed=1)
            m.params.data[...] += 0.2 * rng.standard_normal(m.params.size)
            errs = check_model(m, rng.random((4, 6)), rng.random((4, 2)), rng=rng)
            worst = max(errs, key=errs.get)
            label = f"-ELBO, {lik}, {act}, every block"
            print(f"{label:45s} {errs[worst]:.1e}  ({worst})")


if __name__ == "__main__":
    main()
