"""Annealed importance sampling and BDMC (npvae.inference.ais) against the exact marginal
of pPCA, on a small nonlinear model, and the rules that keep AIS unbiased: step sizes from
the warm-up pass only, fixed during the run."""

import numpy as np
import pytest

from npvae.core.model import VAEModel
from npvae.inference import ais as ais_mod
from npvae.inference.ais import ais, bdmc, schedule, simulate
from npvae.inference.samplers import HMC
from tests.inference_models import PPCA


@pytest.fixture(scope="module")
def ppca():
    p = PPCA(z=2, d=6, variance=0.2, seed=4, exact_encoder=True)
    x = p.data(30)
    return p, x, p.log_px(x)


def test_ais_matches_the_exact_marginal_and_tightens_with_t(ppca):
    p, x, exact = ppca
    err = {}
    for t in (2, 20, 300):
        r = ais(p.model, x, n_steps=t, chains=8, rng=0, n_leapfrog=5)
        m, se = r.mean()
        err[t] = (m - exact.mean(), se)
        assert r.log_px.shape == (30,) and r.log_w.shape == (8, 30)
    assert err[2][0] < -5 * err[2][1]  # far too few temperatures: clearly below
    assert 0.5 * err[2][0] < err[20][0] < err[300][0] + 3 * err[300][1]
    assert abs(err[300][0]) < 3 * err[300][1], err
    # per point, the standard errors are honest (z-scores near N(0, 1))
    r = ais(p.model, x, n_steps=300, chains=8, rng=1, n_leapfrog=5)
    z = (r.log_px - exact) / r.stderr
    assert abs(z.mean()) < 1.0 and 0.5 < z.std() < 1.6, z


@pytest.mark.parametrize("kind", ["linear", "sigmoid"])
def test_ais_from_the_encoder(ppca, kind):
    """From q(z|x) (here close to the posterior) few temperatures are enough."""
    p, x, exact = ppca
    r = ais(p.model, x, n_steps=30, chains=8, rng=2, start="encoder", schedule_kind=kind,
            n_leapfrog=5)
    m, se = r.mean()
    assert abs(m - exact.mean()) < 3 * se
    assert 0.3 < r.accept.mean() < 0.99


def test_bdmc_brackets_the_exact_marginal_and_closes_with_t(ppca):
    p = ppca[0]
    gaps = []
    for t in (5, 400):
        lo, up, xs, zs = bdmc(p.model, 30, n_steps=t, chains=8, rng=1, n_leapfrog=5)
        assert lo.direction == "forward" and up.direction == "reverse"
        e = p.log_px(xs).mean()
        (lm, ls), (um, us) = lo.mean(), up.mean()
        assert lm < e + 3 * ls and um > e - 3 * us
        gaps.append(um - lm)
    assert gaps[0] > 1.0 and gaps[1] < 0.25 * gaps[0], gaps


def test_bdmc_on_a_nonlinear_model_brackets_and_closes():
    model = VAEModel(8, 2, hidden=(12,), activation="tanh", dtype="float64", seed=5)
    model.decoder.layers[0].W[...] *= 2.0
    gaps = []
    for t in (5, 200):
        lo, up, _, _ = bdmc(model, 20, n_steps=t, chains=8, rng=3, n_leapfrog=5)
        (lm, ls), (um, us) = lo.mean(), up.mean()
        assert lm < um + 3 * np.hypot(ls, us)
        gaps.append(um - lm)
    assert gaps[1] < 0.5 * gaps[0], gaps


def test_the_run_uses_the_warmup_record_and_adapts_nothing(ppca, monkeypatch):
    """Step sizes during the real run are exp of the warm-up record interpolated along the
    schedule: a function of the warm-up pass, never of the run's own states."""
    p, x, _ = ppca
    seen, record = [], {}
    real_step, real_warm = HMC.step, ais_mod._Annealer.warmup

    def spy_step(self, state, step_size, beta, rng):
        seen.append((beta, step_size.copy()))
        return real_step(self, state, step_size, beta, rng)

    def spy_warm(self, *a):
        record["log_eps"] = real_warm(self, *a)
        return record["log_eps"]

    monkeypatch.setattr(HMC, "step", spy_step)
    monkeypatch.setattr(ais_mod._Annealer, "warmup", spy_warm)
    t_steps, warm = 50, 20
    ais(p.model, x, n_steps=t_steps, chains=4, rng=0, warmup=warm, n_leapfrog=3)
    run = seen[warm:]
    assert len(run) == t_steps - 1  # the last temperature needs no transition
    betas = schedule(t_steps)
    pos = np.linspace(0, warm - 1, t_steps + 1)
    le = record["log_eps"]
    for t, (beta, step) in enumerate(run, start=1):
        assert beta == betas[t]
        want = np.array([np.interp(pos[t], np.arange(warm), le[:, j]) for j in range(30)])
        np.testing.assert_allclose(step, np.exp(want), rtol=1e-6)


def test_schedules():
    for kind in ("linear", "sigmoid"):
        b = schedule(100, kind)
        assert b[0] == 0 and b[-1] == 1 and len(b) == 101 and np.all(np.diff(b) > 0)
    s = schedule(100, "sigmoid")
    assert s[1] < 0.01 and 1 - s[-2] < 0.01  # denser at both ends than linear's 0.01
    with pytest.raises(ValueError, match="schedule must be one of"):
        schedule(10, "cosine")


def test_a_seed_repeats_ais_and_simulate(ppca):
    p, x, _ = ppca
    a = ais(p.model, x[:3], n_steps=10, chains=2, rng=7, n_leapfrog=2)
    b = ais(p.model, x[:3], n_steps=10, chains=2, rng=7, n_leapfrog=2)
    np.testing.assert_array_equal(a.log_w, b.log_w)
    xa, za = simulate(p.model, 4, rng=1)
    xb, zb = simulate(p.model, 4, rng=1)
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(za, zb)


def test_batches_give_the_per_point_answer(ppca):
    p, x, exact = ppca
    r = ais(p.model, x, n_steps=200, chains=8, rng=0, batch_size=7, n_leapfrog=5)
    m, se = r.mean()
    assert abs(m - exact.mean()) < 3 * se and r.rows == 56


def test_ais_errors_name_the_problem(ppca):
    p, x, _ = ppca
    with pytest.raises(ValueError, match="start must be"):
        ais(p.model, x, n_steps=5, start="data")
    with pytest.raises(ValueError, match="target_accept"):
        ais(p.model, x, n_steps=5, target_accept=1.5)
    with pytest.raises(ValueError, match="reverse_from has 2 rows"):
        ais(p.model, x, n_steps=5, reverse_from=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="scale must be"):
        ais(p.model, x, n_steps=5, scale="unit")
    with pytest.raises(TypeError, match="n_steps must be an integer"):
        ais(p.model, x, n_steps=5.5)
