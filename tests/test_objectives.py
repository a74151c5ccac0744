"""The importance-weighted objectives (npvae.core.objectives): IWAE's gradient against central
differences, DReG's encoder gradient against central differences of the surrogate it is the
gradient of, k = 1 against the ELBO with a Monte-Carlo KL, float32 stability, and, over many
noise draws, DReG's expectation (IWAE's) and its variance (lower, and falling with k)."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from scipy.special import logsumexp, softmax
from scipy.stats import norm

from npvae.core import objectives
from npvae.core.gradcheck import check_model, rel_error
from npvae.core.model import VAEModel
from npvae.core.objectives import ImportanceWeighted, log_prior_ratio
from npvae.kernels._reference import importance_weights
from tests.cases import LIKELIHOOD_NAMES, SMOOTH_NAMES
from tests.test_model_grad import data_for, preactivations

TOL = 1e-6


def perturbed(d, z, seed, **kw):
    model = VAEModel(d, z, dtype="float64", seed=seed % 1000, **kw)
    rng = np.random.default_rng(seed)
    model.params.data[...] += 0.3 * rng.standard_normal(model.params.size)
    return model, rng


def log_weights(model, x, y, noise, beta, mu0=None, lv0=None):
    """a = log p(x|z) + beta (log p(z) - log q(z|x)) of every sample (S, N), from the model's
    evaluation path (encode, decode, Likelihood.nll) and scipy's normal densities; q's
    parameters are ``mu0, lv0`` when given (DReG's stopped q), else the encoder's."""
    mu, lv = model.encode(x, y)
    s, n, _ = noise.shape
    z = mu + np.exp(0.5 * lv) * noise
    yt = None if y is None else np.tile(y, (s, 1))
    nll = model.likelihood.nll(model.decode(z.reshape(s * n, -1), yt, raw=True), x)
    q_mu, q_lv = (mu, lv) if mu0 is None else (mu0, lv0)
    log_q = norm.logpdf(z, q_mu, np.exp(0.5 * q_lv)).sum(-1)
    return -nll.reshape(s, n) + beta * (norm.logpdf(z).sum(-1) - log_q)


def dreg_surrogate_check(model, x, y, noise, k, beta):
    """DReG's encoder gradient is the gradient of -1/(LN) sum_r c_r a_r(z_r(phi); q frozen)
    with c_r = w_r (1 - beta + beta w_r) held at the current point: check it by the
    fourth-order stencil on every encoder entry. Returns the relative error."""
    s, n, _ = noise.shape
    mu0, lv0 = model.encode(x, y)
    w = softmax(log_weights(model, x, y, noise, beta).reshape(-1, k, n), axis=1).reshape(s, n)
    c = w * (1 - beta + beta * w)

    def surrogate():
        return -(c * log_weights(model, x, y, noise, beta, mu0, lv0)).sum() / (s // k * n)

    model.loss_and_grad(x, y, noise=noise, beta=beta, objective="iwae-dreg", k=k)
    p, h = model.params, 1e-3
    idx = np.concatenate([np.arange(sl.start, sl.stop) for name, sl in
                          p.block_slices().items() if name.startswith("encoder.")])
    analytic, numeric = p.grad[idx].copy(), np.empty(len(idx))
    f0 = surrogate()
    for j, i in enumerate(idx):
        old, f = p.data[i], {}
        for step in (-2, -1, 1, 2):
            p.data[i] = old + step * h
            f[step] = surrogate()
        p.data[i] = old
        numeric[j] = (f[-2] - 8 * f[-1] + 8 * f[1] - f[2]) / (12 * h)
    floor = 1e7 * np.finfo(np.float64).eps * max(abs(f0), 1.0) / h  # as check_model's
    return rel_error(analytic, numeric, floor)


def check_both(enc, dec, d, z, n, L, k, beta, lik, act, cond, seed):
    """IWAE's gradient, every block, by check_model; DReG's loss and decoder gradient equal
    IWAE's, and its encoder gradient is the surrogate's."""
    model, rng = perturbed(d, z, seed, encoder_hidden=enc, decoder_hidden=dec, activation=act,
                           likelihood=lik, variance=0.7, n_samples=L, cond_dim=cond)
    x = data_for(lik, rng, n, d)
    y = rng.standard_normal((n, cond)) if cond else None
    noise = rng.standard_normal((L * k, n, z))
    if act == "relu":  # keep the stencil away from the kinks, as test_model_grad does
        assume(all(np.min(np.abs(a)) > 0.05 for a in preactivations(model, x, y, noise)))
    errors = check_model(model, x, y, noise, objective="iwae", k=k, beta=beta)
    assert set(errors) == set(model.params.shapes)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= TOL, ("iwae", worst, errors[worst])

    loss, _ = model.loss_and_grad(x, y, noise=noise, beta=beta, objective="iwae", k=k)
    g_iwae = model.params.grad.copy()
    loss_d, _ = model.loss_and_grad(x, y, noise=noise, beta=beta, objective="iwae-dreg", k=k)
    assert loss_d == loss
    for name, sl in model.params.block_slices().items():
        if not name.startswith("encoder."):
            np.testing.assert_array_equal(model.params.grad[sl], g_iwae[sl], err_msg=name)
    assert dreg_surrogate_check(model, x, y, noise, k, beta) <= TOL


@given(
    enc=st.lists(st.integers(1, 4), max_size=2), dec=st.lists(st.integers(1, 3), max_size=1),
    d=st.integers(1, 4), z=st.integers(1, 3), n=st.integers(1, 3), L=st.integers(1, 2),
    k=st.integers(1, 5), beta=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
    lik=st.sampled_from(LIKELIHOOD_NAMES), act=st.sampled_from(SMOOTH_NAMES + ["relu"]),
    cond=st.integers(0, 2), seed=st.integers(0, 2**31),
)
def test_iwae_and_dreg_gradients_every_block(enc, dec, d, z, n, L, k, beta, lik, act, cond,
                                             seed):
    check_both(enc, dec, d, z, n, L, k, beta, lik, act, cond, seed)


@pytest.mark.parametrize("lik", LIKELIHOOD_NAMES)
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_batch_1_every_likelihood_and_k(lik, k):
    check_both([3], [2], 3, 2, 1, 1, k, 1.0, lik, "tanh", 1 if k % 2 else 0, k)


@given(lik=st.sampled_from(LIKELIHOOD_NAMES), n=st.integers(1, 3), L=st.integers(1, 3),
       beta=st.sampled_from([0.0, 0.5, 1.0, 3.0]), cond=st.integers(0, 2),
       seed=st.integers(0, 2**31))
def test_k1_is_the_elbo_with_a_monte_carlo_kl(lik, n, L, beta, cond, seed):
    """Same noise: the loss is recon + beta * (mean over samples of log q - log p), the
    decoder's gradient is the ELBO's, and with beta = 0 (no KL) every gradient is."""
    model, rng = perturbed(4, 2, seed, hidden=(3,), activation="tanh", likelihood=lik,
                           n_samples=L, cond_dim=cond)
    x = data_for(lik, rng, n, 4)
    y = rng.standard_normal((n, cond)) if cond else None
    noise = rng.standard_normal((L, n, 2))
    _, elbo = model.loss_and_grad(x, y, noise=noise, beta=beta)
    g_elbo = model.params.grad.copy()
    ratio = log_weights(model, x, y, noise, 1.0) - log_weights(model, x, y, noise, 0.0)
    mc_kl = -ratio.mean()  # the Monte-Carlo KL: the mean of log q - log p over the samples
    for name in ("iwae", "iwae-dreg"):
        loss, parts = model.loss_and_grad(x, y, noise=noise, beta=beta, objective=name, k=1)
        assert loss == pytest.approx(elbo["recon"] + beta * mc_kl, rel=1e-12, abs=1e-12)
        assert parts["recon"] == pytest.approx(elbo["recon"], rel=1e-12)
        assert parts["kl"] == pytest.approx(mc_kl, rel=1e-10, abs=1e-12)
        for block, sl in model.params.block_slices().items():
            if beta == 0 or not block.startswith("encoder."):
                np.testing.assert_allclose(model.params.grad[sl], g_elbo[sl], rtol=1e-12,
                                           atol=1e-14, err_msg=(name, block))


def test_log_prior_ratio_is_the_density_ratio():
    rng = np.random.default_rng(0)
    mu, lv = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    eps = rng.standard_normal((5, 4, 3))
    z = mu + np.exp(0.5 * lv) * eps
    want = norm.logpdf(z).sum(-1) - norm.logpdf(z, mu, np.exp(0.5 * lv)).sum(-1)
    np.testing.assert_allclose(log_prior_ratio(eps, z, lv), want, rtol=1e-12)
    got32 = log_prior_ratio(eps.astype(np.float32), z.astype(np.float32), lv.astype(np.float32))
    assert got32.dtype == np.float64
    np.testing.assert_allclose(got32, want, rtol=1e-5, atol=1e-5)


@given(L=st.integers(1, 3), k=st.integers(1, 6), n=st.integers(1, 4), shift=st.sampled_from(
    [0.0, -800.0, 1e5]), seed=st.integers(0, 2**31))
def test_importance_weights_are_log_sum_exp_and_softmax(L, k, n, shift, seed):
    a = np.random.default_rng(seed).standard_normal((L * k, n)) * 5 + shift
    bound, w = importance_weights(a, k)
    g = a.reshape(L, k, n)
    np.testing.assert_allclose(bound, logsumexp(g, axis=1) - np.log(k), rtol=1e-12)
    np.testing.assert_allclose(w.reshape(L, k, n), softmax(g, axis=1), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(w.reshape(L, k, n).sum(axis=1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("name", ["iwae", "iwae-dreg"])
@pytest.mark.parametrize("lik", ["bernoulli", "gaussian-diag"])
def test_float32_log_weights_far_below_exp_range(name, lik):
    """Decoder outputs ~1e3 wrong make every log weight about -1e4 nats: exp() of them is 0
    even in float64, yet the float32 loss and gradient are finite and match float64's."""
    rng = np.random.default_rng(1)
    x = data_for(lik, rng, 3, 8)
    if lik == "bernoulli":
        x = (x > 0.5).astype(float)
    grads = {}
    for dt in ("float64", "float32"):
        model = VAEModel(8, 2, hidden=(4,), activation="tanh", likelihood=lik, dtype=dt, seed=0)
        named = model.named_parameters()
        named["decoder.out.b"][...] = np.where(x[0] > 0.5, -1e3, 1e3) if lik == "bernoulli" \
            else 40.0
        noise = np.random.default_rng(2).standard_normal((5, 3, 2))
        loss, parts = model.loss_and_grad(x, noise=noise, objective=name, k=5)
        if dt == "float64":
            a = log_weights(model, x, None, noise, 1.0)
        grads[dt] = (loss, model.params.grad.astype(np.float64))
        assert np.isfinite(loss) and np.all(np.isfinite(model.params.grad))
    assert np.all(np.exp(a) == 0) and a.max() < -1000  # the naive mean would be log 0
    assert grads["float32"][0] == pytest.approx(grads["float64"][0], rel=1e-6)
    assert rel_error(grads["float32"][1], grads["float64"][1]) < 1e-4


def test_bad_options_are_refused_by_name():
    model = VAEModel(4, 2, hidden=(3,), dtype="float64", free_bits=0.1)
    x = np.random.default_rng(0).random((2, 4))
    with pytest.raises(ValueError, match="free_bits"):
        model.loss_and_grad(x, objective="iwae", k=2)
    model.loss_and_grad(x, objective="iwae", k=2, free_bits=0.0)
    with pytest.raises(ValueError, match="n_samples"):
        model.loss_and_grad(x, objective="elbo", k=3)
    with pytest.raises(ValueError, match="objective must be one of"):
        model.loss_and_grad(x, objective="iwea", k=3)
    with pytest.raises(ValueError, match="k must be >= 1"):
        model.loss_and_grad(x, objective="iwae", k=0)
    with pytest.raises(ValueError, match=r"\(L k, N, Z\) = \(3, 2, 2\)"):
        model.loss_and_grad(x, objective="iwae", k=3, free_bits=0.0, noise=np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="decoder rows"):
        model.loss_and_grad(x, objective="iwae", k=objectives.MAX_ROWS, free_bits=0.0)
    assert objectives.check_objective(None, None) == ("elbo", 1)
    assert objectives.check_objective("IWAE", None) == ("iwae", objectives.DEFAULT_K)


# ----------------------------------------------------------------- over many noise draws
class ImportanceWeightedSTL(ImportanceWeighted):
    """A control that must fail the expectation test: q's score dropped without DReG's
    correction (weights w, not w^2), the biased "sticking the landing" IWAE."""

    def __init__(self, k):
        super().__init__(k, dreg=True)

    def rho(self, wn, beta, out):
        out.fill(1.0)
        return out


DRAWS, COPIES = 240, 40  # calls, and copies of the data point per call (a batch mean each)
KS = (1, 10, 50)


@pytest.fixture(scope="module")
def encoder_gradients():
    """For each k: the encoder gradients of IWAE, DReG and the control on the same noise,
    each row the mean of COPIES independent per-point estimates."""
    model, rng = perturbed(5, 2, 7, hidden=(6,), activation="tanh")
    model.params.data[...] += 0.5 * rng.standard_normal(model.params.size)
    x = np.tile(rng.random((1, 5)), (COPIES, 1))
    enc = np.concatenate([np.arange(sl.start, sl.stop) for name, sl in
                          model.params.block_slices().items() if name.startswith("encoder.")])
    out = {}
    for k in KS:
        estimators = {"iwae": "iwae", "dreg": "iwae-dreg", "stl": ImportanceWeightedSTL(k)}
        g = {e: np.empty((DRAWS, len(enc))) for e in estimators}
        noise_rng = np.random.default_rng(k)
        for b in range(DRAWS):
            noise = noise_rng.standard_normal((k, COPIES, 2))
            for e, obj in estimators.items():
                model.loss_and_grad(x, noise=noise, objective=obj, k=k)
                g[e][b] = model.params.grad[enc]
        out[k] = g
    return out


def max_t(d):
    """The largest |mean / standard error| over the columns of paired differences ``d``."""
    return float(np.max(np.abs(d.mean(0)) / (d.std(0, ddof=1) / np.sqrt(len(d)))))


def test_dreg_has_the_iwae_gradient_expectation(encoder_gradients):
    """Paired over the same noise, DReG - IWAE averages to 0 in every coordinate within the
    measured standard error (Bonferroni over the coordinates, two-sided 0.1 %); the biased
    control is caught by the same test at k > 1 (at k = 1 it is DReG)."""
    p = encoder_gradients[1]["iwae"].shape[1]
    limit = norm.ppf(1 - 0.001 / (2 * p))
    for k, g in encoder_gradients.items():
        assert max_t(g["dreg"] - g["iwae"]) < limit, k
        if k > 1:
            assert max_t(g["stl"] - g["iwae"]) > limit, k


def test_dreg_variance_is_lower_and_falls_with_k(encoder_gradients):
    """Total variance V of the encoder gradient: V_dreg < V_iwae at k = 10 and 50, and the
    ratio V_dreg / V_iwae falls from k = 1 to 10 to 50 (Tucker et al.; Rainforth et al.'s
    signal-to-noise effect), each by more than 4 standard errors (delta method on the
    per-draw squared deviations)."""
    log_ratio, se = {}, {}
    for k, g in encoder_gradients.items():
        q = {e: ((g[e] - g[e].mean(0)) ** 2).sum(1) for e in ("iwae", "dreg")}
        v = {e: q[e].mean() for e in q}
        if k > 1:
            diff = q["iwae"] - q["dreg"]
            assert diff.mean() > 4 * diff.std(ddof=1) / np.sqrt(DRAWS), k
        log_ratio[k] = np.log(v["dreg"] / v["iwae"])
        psi = q["dreg"] / v["dreg"] - q["iwae"] / v["iwae"]  # influence of each draw
        se[k] = psi.std(ddof=1) / np.sqrt(DRAWS)
    for lo, hi in zip(KS[:-1], KS[1:], strict=True):
        assert log_ratio[lo] - log_ratio[hi] > 4 * np.hypot(se[lo], se[hi]), (lo, hi, log_ratio)
    # Rainforth et al.: IWAE's encoder signal-to-noise ratio falls with k, DReG's does not
    snr = {k: {e: np.mean(np.abs(g[e].mean(0)) / g[e].std(0)) for e in ("iwae", "dreg")}
           for k, g in encoder_gradients.items()}
    assert snr[50]["iwae"] < snr[10]["iwae"] < snr[1]["iwae"], snr
    assert snr[50]["dreg"] > snr[50]["iwae"] and snr[10]["dreg"] > snr[10]["iwae"], snr
