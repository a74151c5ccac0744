"""MCMC over z (npvae.inference.samplers) and its diagnostics: exact posteriors of pPCA,
the MALA = one-leapfrog-HMC identity, robustness to NaN/inf proposals, warm-up-only bounded
adaptation, seeds; ESS against an AR(1) chain's known value, split R-hat."""

import numpy as np
import pytest
from scipy.signal import lfilter

from npvae.core.model import VAEModel
from npvae.inference import samplers
from npvae.inference.diagnostics import effective_sample_size, split_rhat
from npvae.inference.joint import LogJoint, Path
from npvae.inference.samplers import HMC, STEP_MAX, STEP_MIN, StepSize, sample_posterior
from tests.inference_models import PPCA


@pytest.fixture(scope="module")
def ppca():
    p = PPCA(z=2, d=5, variance=0.3, seed=3, exact_encoder=True)
    return p, p.data(3)


@pytest.mark.parametrize("method,init,scale", [("rwmh", "prior", None),
                                               ("rwmh", "encoder", "encoder"),
                                               ("mala", "encoder", "encoder"),
                                               ("hmc", "prior", None),
                                               ("hmc", "encoder", "encoder")])
def test_samplers_match_the_exact_ppca_posterior(ppca, method, init, scale):
    """Means and covariances within 5 Monte-Carlo standard errors (from each chain set's
    own ESS) of the closed form, for every point and entry."""
    p, x = ppca
    c = sample_posterior(p.model, x, method=method, n_samples=1500, warmup=300, chains=8,
                         init=init, scale=scale, rng=11, n_leapfrog=5)
    ess = c.ess()
    assert ess.min() > 300, ess
    assert np.all(c.rhat() < 1.05)
    sd = np.sqrt(np.diag(p.post_cov))
    np.testing.assert_array_less(np.abs(c.mean() - p.post_mean(x)), 5 * sd / np.sqrt(ess))
    cov, e = c.cov(), ess.min(axis=1)[:, None, None]
    # sd of a sample covariance: sqrt((s_ii s_jj + s_ij^2) / n_eff)
    se = np.sqrt((np.outer(sd ** 2, sd ** 2) + p.post_cov ** 2)[None] / e)
    np.testing.assert_array_less(np.abs(cov - p.post_cov[None]), 5 * se)
    assert np.all((0.1 < c.accept) & (c.accept < 0.95))
    want = samplers.TARGET_ACCEPT[method]
    assert np.all(np.abs(c.accept - want) < 0.15), (c.accept, want)


def test_a_seed_repeats_the_chains_bit_for_bit(ppca):
    p, x = ppca
    kw = dict(method="hmc", n_samples=20, warmup=10, chains=2, n_leapfrog=3)
    a, b = sample_posterior(p.model, x, rng=5, **kw), sample_posterior(p.model, x, rng=5, **kw)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert not np.array_equal(a.samples, sample_posterior(p.model, x, rng=6, **kw).samples)


def test_mala_acceptance_is_the_explicit_mala_ratio():
    """One HMC step with one leapfrog step accepts with min(1, f(z')q(z|z') / f(z)q(z'|z)),
    q(.|z) = N(z + eps^2/2 grad log f(z), eps^2 I), computed here by hand."""
    model = VAEModel(6, 3, hidden=(7,), activation="tanh", dtype="float64", seed=2)
    rng = np.random.default_rng(0)
    x = rng.random((4, 6))
    path = Path(LogJoint(model, x, chains=2))
    state = path.new_point()
    state.z[...] = rng.standard_normal(state.z.shape)
    path.evaluate(state)
    z0 = state.z.copy()
    eps = np.array([0.3, 0.5, 0.8, 1.1])
    kernel = HMC(path, n_leapfrog=1)
    prob = kernel.step(state, eps, 1.0, np.random.default_rng(7)).copy()
    xi = kernel._normal(np.random.default_rng(7), np.empty_like(z0)).copy()  # its momentum

    joint = LogJoint(model, x, chains=2)

    def logf_grad(z):
        g = np.empty_like(z)
        return joint(z, g).copy(), g

    e = np.tile(eps, 2)[:, None]
    f0, g0 = logf_grad(z0)
    z1 = z0 + 0.5 * e ** 2 * g0 + e * xi
    f1, g1 = logf_grad(z1)
    log_q_fwd = -((z1 - z0 - 0.5 * e ** 2 * g0) ** 2).sum(1) / (2 * e[:, 0] ** 2)
    log_q_bwd = -((z0 - z1 - 0.5 * e ** 2 * g1) ** 2).sum(1) / (2 * e[:, 0] ** 2)
    want = np.exp(np.minimum(0, f1 + log_q_bwd - f0 - log_q_fwd))
    np.testing.assert_allclose(prob, want, rtol=1e-9)
    moved = kernel.accept
    np.testing.assert_allclose(state.z[moved], z1[moved], rtol=1e-12)
    np.testing.assert_array_equal(state.z[~moved], z0[~moved])


class PoisonedPath(Path):
    """Every proposal of the rows in ``bad`` gets a NaN or inf somewhere."""

    def __init__(self, joint, bad, where):
        super().__init__(joint)
        self.bad, self.where, self.calls = bad, where, 0

    def evaluate(self, p, values=True):
        super().evaluate(p, values)
        self.calls += 1
        if self.calls == 1:
            return p  # the starting state stays clean
        if self.where == "energy":
            p.lr[self.bad] = np.nan
        elif self.where == "grad":  # inside the trajectory only: the energy stays finite
            if not values:
                p.g_lr[self.bad, 0] = np.inf
        elif self.where == "energy_inf":
            p.lr[self.bad] = -np.inf
            p.lb[self.bad] = np.inf
        return p


@pytest.mark.parametrize("method,where", [("rwmh", "energy"), ("rwmh", "energy_inf"),
                                          ("hmc", "energy"), ("hmc", "grad"),
                                          ("mala", "energy_inf")])
def test_a_poisoned_proposal_never_reaches_the_kept_state(ppca, method, where, monkeypatch):
    p, x = ppca
    bad = np.array([1, 4])  # rows of 2 chains x 3 points
    if method == "mala" and where == "grad":
        pytest.skip("one leapfrog step has no inner gradient")
    made = []

    def poisoned(joint, base=None):
        made.append(PoisonedPath(joint, bad, where))
        return made[-1]

    monkeypatch.setattr(samplers, "Path", poisoned)
    c = sample_posterior(p.model, x, method=method, n_samples=50, warmup=20, chains=2,
                         rng=1, n_leapfrog=4, init="encoder")
    s = c.samples.reshape(50, 6, 2)
    assert np.all(np.isfinite(s))
    assert np.all(s[:, bad] == s[:1, bad])  # never moved
    good = np.setdiff1d(np.arange(6), bad)
    assert np.all(np.ptp(s[:, good], axis=0) > 0)  # the others did
    assert made[0].calls > 70  # the poison was applied on every step


def test_step_size_adapts_in_warmup_only_and_stays_bounded():
    s = StepSize(np.array([1.0, 1.0]), 0.65, chains=2, warmup=400, dtype=np.float64)
    trace = []
    for _ in range(400):  # rows are chain-major: point 0 never accepts, point 1 always
        s.update(np.array([0.0, 1.0, 0.0, 1.0]))
        trace.append(s.value.copy())
    trace = np.array(trace)
    assert np.all(np.diff(trace[:, 0]) <= 0) and np.all(np.diff(trace[:, 1]) >= 0)
    assert trace.min() >= STEP_MIN * (1 - 1e-12) and trace.max() <= STEP_MAX * (1 + 1e-12)
    assert s.value[0] == pytest.approx(STEP_MIN) and s.value[1] == pytest.approx(STEP_MAX)
    always = np.ones(4)
    s.freeze()
    frozen = s.value.copy()
    assert np.all((STEP_MIN <= frozen) & (frozen <= STEP_MAX))
    with pytest.raises(RuntimeError, match="warm-up only"):
        s.update(always)
    np.testing.assert_array_equal(s.value, frozen)


def test_sampler_step_sizes_are_constant_after_warmup(ppca, monkeypatch):
    p, x = ppca
    seen = []
    real = HMC.step

    def spy(self, state, step_size, beta, rng):
        seen.append(step_size.copy())
        return real(self, state, step_size, beta, rng)

    monkeypatch.setattr(HMC, "step", spy)
    c = sample_posterior(p.model, x, method="hmc", n_samples=30, warmup=40, chains=2, rng=0,
                         n_leapfrog=2)
    seen = np.array(seen)
    assert len(seen) == 70
    assert not np.all(seen[:40] == seen[0])  # adapted in warm-up
    assert np.all(seen[40:] == seen[40])  # frozen after
    np.testing.assert_allclose(seen[40], c.step_size, rtol=1e-6)


def test_sampler_errors_name_the_problem(ppca):
    p, x = ppca
    with pytest.raises(ValueError, match="method must be one of"):
        sample_posterior(p.model, x, method="nuts")
    with pytest.raises(ValueError, match="init must be"):
        sample_posterior(p.model, x, init="zero", n_samples=2, warmup=0)
    with pytest.raises(ValueError, match="an init array must have shape"):
        sample_posterior(p.model, x, init=np.zeros((3, 2)), chains=2, n_samples=2)
    with pytest.raises(ValueError, match="step_size must be positive"):
        sample_posterior(p.model, x, step_size=-1.0, n_samples=2)
    with pytest.raises(ValueError, match="scale must be positive"):
        sample_posterior(p.model, x, scale=np.zeros((3, 2)), n_samples=2)
    with pytest.raises(TypeError, match="rng must be"):
        sample_posterior(p.model, x, rng="seed", n_samples=2)


def test_box_muller_normals_are_standard_normal():
    """The momenta and random-walk noise: N(0, 1) by a KS test, independent neighbours,
    an odd count included, and a seed repeats them."""
    from scipy import stats

    from npvae.inference.samplers import RandomWalk

    p = PPCA(z=3, d=4, seed=0)
    kernel = RandomWalk(Path(LogJoint(p.model, p.data(5), chains=7)))  # 105 values
    out, rng = np.empty((35, 3)), np.random.default_rng(1)
    d = np.concatenate([kernel._normal(rng, out).ravel().copy() for _ in range(2000)])
    assert stats.kstest(d, "norm").pvalue > 0.01
    assert abs(d.mean()) < 0.01 and abs(d.std() - 1) < 0.01
    assert abs(np.corrcoef(d[:-1], d[1:])[0, 1]) < 0.01
    a = kernel._normal(np.random.default_rng(3), np.empty((35, 3))).copy()
    np.testing.assert_array_equal(a, kernel._normal(np.random.default_rng(3), out))


# ----------------------------------------------------------------------------- diagnostics
def ar1(phi, s, k, m, rng):
    e = rng.standard_normal((s, k, m))
    e[0] /= np.sqrt(1 - phi ** 2)  # start in the stationary distribution
    return lfilter([1.0], [1.0, -phi], e, axis=0)


@pytest.mark.parametrize("phi", [0.0, 0.5, 0.9, -0.5])
def test_ess_matches_the_ar1_closed_form(phi):
    """An AR(1) chain x_t = phi x_{t-1} + e_t has rho_t = phi^t, so
    ESS = K S (1 - phi) / (1 + phi)."""
    rng = np.random.default_rng(int(10 * phi) + 20)
    s, k, m = 8000, 4, 24
    ess = effective_sample_size(ar1(phi, s, k, m, rng))
    want = k * s * (1 - phi) / (1 + phi)
    ratio = ess / want
    assert abs(np.median(ratio) - 1) < 0.05, ratio
    assert np.all(np.abs(ratio - 1) < 0.3), ratio


def test_split_rhat_is_one_for_agreeing_chains_and_large_otherwise():
    rng = np.random.default_rng(0)
    x = ar1(0.5, 2000, 4, 3, rng)
    r = split_rhat(x)
    assert r.shape == (3,) and np.all(np.abs(r - 1) < 0.01)
    x[:, 0] += 3.0  # one chain elsewhere
    assert np.all(split_rhat(x) > 1.1)
    y = ar1(0.5, 2000, 4, 3, rng) + np.linspace(0, 4, 2000)[:, None, None]  # drifting
    assert np.all(split_rhat(y) > 1.1)


def test_diagnostics_shapes_and_errors():
    rng = np.random.default_rng(0)
    d = rng.standard_normal((100, 3, 4, 2))
    assert effective_sample_size(d).shape == (4, 2) and split_rhat(d).shape == (4, 2)
    assert np.all(effective_sample_size(np.ones((50, 2, 3))) == 100)
    with pytest.raises(ValueError, match="at least 4 draws"):
        effective_sample_size(d[:2])
    with pytest.raises(ValueError, match=r"shape \(S, K, ...\)"):
        split_rhat(np.ones(10))


@pytest.mark.parametrize("kind", ["hmc", "rwmh", "ais"])
def test_steps_allocate_no_row_sized_arrays(kind):
    """Once built, a transition (and an AIS temperature) allocates nothing the size of the
    batch: with R = 20,000 rows one float64 temporary would be 160 kB, against the few kB
    of Python objects a step makes."""
    import tracemalloc

    from npvae.inference.ais import _Annealer, schedule, step_table
    from npvae.inference.samplers import RandomWalk

    p = PPCA(z=2, d=3, variance=0.5, seed=0)
    if p.model.kernels.name == "numpy":
        pytest.skip("the reference kernels allocate their temporaries, by design")
    x = p.data(1000)
    rng = np.random.default_rng(0)
    step = np.full(1000, 0.1)
    if kind == "ais":
        an = _Annealer(p.model, x, None, 20, "prior", 2, None)
        an._start(rng, None)
        steps = step_table(np.full((5, 1000), np.log(0.1)), 6, np.float64)

        class Bar:
            def update(self, _):
                pass

        def run():
            an._run(schedule(6), steps, rng, Bar(), False)
    else:
        path = Path(LogJoint(p.model, x, chains=20))
        state = path.new_point(grad=kind == "hmc")
        state.z[...] = rng.standard_normal(state.z.shape)
        path.evaluate(state)
        kernel = HMC(path, 3, jitter=0.2) if kind == "hmc" else RandomWalk(path)

        def run():
            for _ in range(3):
                kernel.step(state, step, 1.0, rng)
    run()  # first calls compile and allocate the per-shape buffers
    tracemalloc.start()
    try:
        run()
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        run()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak - before < 40_000, peak - before
