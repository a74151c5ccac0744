"""The whole -ELBO against central differences, with respect to every parameter block.

Hypothesis draws the architecture (depths 0-2, widths, latent size), the batch (1
included), L, beta, free bits, the likelihood, the activation, conditioning and the
seed; the noise is fixed so the loss is a deterministic function of the parameters, and
every entry of the (tiny) flat parameter vector is checked.
"""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from npvae.core.gradcheck import check_model
from npvae.core.model import VAEModel
from tests.cases import ACTIVATION_NAMES, LIKELIHOOD_NAMES, SMOOTH_NAMES

TOL = 1e-6


def preactivations(model, x, y, noise):
    """Every hidden layer's pre-activation for this batch (to stay away from ReLU kinks)."""
    def run(mlp, inp):
        pre = []
        for layer in mlp.layers:
            a = inp @ layer.W + layer.b
            pre.append(a)
            inp = layer.act.forward(a)
        return inp, pre

    enc_in = x if y is None else np.hstack([x, y])
    h, pre_e = run(model.encoder, enc_in)
    z = model.latent_dim
    L, n = noise.shape[:2]
    zs = (h[:, :z] + np.exp(0.5 * h[:, z:]) * noise).reshape(L * n, z)
    dec_in = zs if y is None else np.hstack([zs, np.tile(y, (L, 1))])
    _, pre_d = run(model.decoder, dec_in)
    return pre_e[:-1] + pre_d[:-1]


def data_for(lik, rng, n, d):
    return rng.random((n, d)) if lik == "bernoulli" else rng.standard_normal((n, d))


@given(
    enc=st.lists(st.integers(1, 4), max_size=2), dec=st.lists(st.integers(1, 4), max_size=2),
    d=st.integers(1, 5), z=st.integers(1, 3), n=st.integers(1, 4), L=st.integers(1, 3),
    beta=st.sampled_from([0.0, 0.5, 1.0, 4.0]), lik=st.sampled_from(LIKELIHOOD_NAMES),
    act=st.sampled_from(ACTIVATION_NAMES), cond=st.integers(0, 2),
    free_bits=st.sampled_from([0.0, 0.0, 0.2]), seed=st.integers(0, 2**31),
)
def test_elbo_gradient_every_block(enc, dec, d, z, n, L, beta, lik, act, cond, free_bits, seed):
    model = VAEModel(d, z, encoder_hidden=enc, decoder_hidden=dec, activation=act,
                     likelihood=lik, variance=0.7, beta=beta, n_samples=L, cond_dim=cond,
                     free_bits=free_bits, dtype="float64", seed=seed % 1000)
    rng = np.random.default_rng(seed)
    # perturb every parameter (biases and a learned variance start at 0 / their init)
    model.params.data[...] += 0.3 * rng.standard_normal(model.params.size)
    x = data_for(lik, rng, n, d)
    y = rng.standard_normal((n, cond)) if cond else None
    noise = rng.standard_normal((L, n, z))
    if act not in SMOOTH_NAMES:  # ReLU's kink; ELU's second derivative jumps at 0, and the
        # fourth-order stencil of check_model assumes a smooth loss within 2h of the point
        pre = preactivations(model, x, y, noise)
        assume(all(np.min(np.abs(a)) > 0.05 for a in pre))  # >> 2h * |input|, h = 1e-3
    if free_bits:
        model.loss_and_grad(x, y, noise=noise)
        kl_dims = model._workspace(n)["kl_col"] / n
        assume(np.min(np.abs(kl_dims - free_bits)) > 0.02)  # max(kl, fb) has a kink there
    errors = check_model(model, x, y, noise)
    assert set(errors) == set(model.params.shapes)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= TOL, (worst, errors[worst])


@pytest.mark.parametrize("lik", LIKELIHOOD_NAMES)
def test_elbo_gradient_reference_architecture_sampled(lik):
    """A wider model (784-sized data is too slow for every entry): 6 entries of every block."""
    model = VAEModel(30, 4, hidden=(16,), likelihood=lik, n_samples=2, dtype="float64", seed=3)
    rng = np.random.default_rng(0)
    x = data_for(lik, rng, 8, 30)
    errors = check_model(model, x, per_block=6, rng=rng)
    assert max(errors.values()) <= TOL, errors


def test_loss_parts_add_up_and_noise_reproduces():
    model = VAEModel(6, 2, hidden=(5,), beta=2.5, dtype="float64")
    rng = np.random.default_rng(0)
    x = rng.random((4, 6))
    noise = rng.standard_normal((1, 4, 2))
    loss, parts = model.loss_and_grad(x, noise=noise)
    g1 = model.params.grad.copy()
    assert loss == pytest.approx(parts["recon"] + 2.5 * parts["kl"])
    loss2, _ = model.loss_and_grad(x, noise=noise)
    assert loss2 == loss and np.array_equal(model.params.grad, g1)


def test_initial_loss_is_about_chance_level():
    """On coin-flip data the expected Bernoulli NLL of a logit l is E log(2 cosh(l / 2)) >=
    log 2 (chance): an untrained model must score that, whatever its logits are."""
    model = VAEModel(100, 8, hidden=(64,), seed=0, dtype="float64")
    rng = np.random.default_rng(0)
    x = (rng.random((256, 100)) < 0.5).astype(np.float64)
    noise = rng.standard_normal((1, 256, 8))
    _, parts = model.loss_and_grad(x, noise=noise)
    mu, logvar = model.encode(x)
    logits = model.decode(mu + np.exp(0.5 * logvar) * noise[0], raw=True)
    expected = np.log(2 * np.cosh(logits / 2)).sum(1).mean()
    assert parts["recon"] >= 100 * np.log(2) * 0.97
    assert abs(parts["recon"] / expected - 1) < 0.03
    assert parts["kl"] >= 0


def test_target_replaces_x_in_the_likelihood_only():
    """De-noising: encode a corrupted x, score the clean target; gradient still exact."""
    model = VAEModel(5, 2, hidden=(4,), activation="tanh", dtype="float64", seed=1)
    rng = np.random.default_rng(2)
    clean = rng.random((3, 5))
    noisy = np.clip(clean + 0.3 * rng.standard_normal((3, 5)), 0, 1)
    noise = rng.standard_normal((1, 3, 2))
    a, _ = model.loss_and_grad(noisy, noise=noise, target=clean)
    b, _ = model.loss_and_grad(noisy, noise=noise)
    assert a != b
    errors = check_model(model, noisy, noise=noise, target=clean)
    assert max(errors.values()) <= TOL


@pytest.mark.parametrize("cond", [0, 2])
def test_reconstruct_mean_is_decode_of_posterior_mean(cond):
    model = VAEModel(6, 2, hidden=(5,), cond_dim=cond, dtype="float64")
    rng = np.random.default_rng(0)
    x = rng.random((3, 6))
    y = rng.random((3, cond)) if cond else None
    want = model.decode(model.encode(x, y)[0], y)
    for _ in range(2):  # the second call reuses the buffers
        np.testing.assert_array_equal(model.reconstruct_mean(x, y), want)
