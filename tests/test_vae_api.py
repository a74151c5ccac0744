"""The estimator API of npvae.training.estimator.VAE: fit, transform, sample, reconstruct, elbo,
log_likelihood, save/load and argument validation."""

import numpy as np
import pytest

from npvae.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from npvae.training.estimator import VAE


def prototypes(n=300, d=16, flip=0.05, seed=0):
    """Noisy copies of 4 binary prototypes: structure a small VAE can learn in a second."""
    rng = np.random.default_rng(seed)
    protos = (rng.random((4, d)) < 0.5).astype(np.float64)
    labels = rng.integers(0, 4, n)
    x = np.abs(protos[labels] - (rng.random((n, d)) < flip))
    return x, labels


@pytest.fixture(scope="module")
def data():
    return prototypes()


@pytest.fixture(scope="module")
def trained(data):
    x, _ = data
    return VAE(latent_dim=2, hidden=(32,), dtype="float64").fit(
        x, epochs=40, batch_size=32, lr=3e-3, progress=False)


def small(**kw):
    return VAE(**{"latent_dim": 2, "hidden": (16,), "dtype": "float64", **kw})


def test_fit_returns_self_with_falling_loss(data, trained):
    x, _ = data
    m = small()
    assert m.fit(x, epochs=5, batch_size=64, progress=False) is m
    h = trained.history_
    assert [r["epoch"] for r in h] == list(range(1, 41))
    keys = {"epoch", "train_loss", "train_recon", "train_kl", "val_loss", "val_recon",
            "val_kl", "beta", "lr", "seconds"}
    assert keys <= set(h[0])
    assert h[-1]["train_loss"] < h[0]["train_loss"] - 3.0
    assert trained.stop_reason_ == "completed"
    for r in h:
        assert r["train_loss"] == pytest.approx(r["train_recon"] + r["train_kl"])


def test_transform_and_fit_transform_shapes(data, trained):
    x, labels = data
    z = trained.transform(x)
    assert z.shape == (300, 2)
    np.testing.assert_array_equal(z, trained.encode(x)[0])
    # labels are ignored by an unconditional model, as in scikit-learn's Pipeline
    np.testing.assert_array_equal(trained.transform(x, labels[:, None]), z)
    z2 = small().fit_transform(x, labels, epochs=2, progress=False)
    assert z2.shape == (300, 2)


def test_sample_shape_and_range(trained):
    p = trained.sample(50, rng=0)
    assert p.shape == (50, 16) and p.dtype == np.float64
    assert p.min() >= 0 and p.max() <= 1
    xs = trained.sample(50, rng=np.random.default_rng(1), mean=False)
    assert set(np.unique(xs)) <= {0.0, 1.0}
    np.testing.assert_array_equal(trained.sample(7, rng=3), trained.sample(7, rng=3))
    with pytest.raises(ValueError, match="n must be >= 1"):
        trained.sample(0)


def test_reconstruct_improves_over_untrained(data, trained):
    x, _ = data
    untrained = small(hidden=(32,))
    untrained.build(16)

    def bce(p):
        p = np.clip(p, 1e-7, 1 - 1e-7)
        return -np.mean(x * np.log(p) + (1 - x) * np.log1p(-p))

    assert trained.reconstruct(x).shape == x.shape
    assert bce(trained.reconstruct(x)) < 0.6 * bce(untrained.reconstruct(x))


def test_elbo_below_iwae_and_k1_matches_elbo(data, trained):
    x, _ = data
    elbo = np.mean([trained.elbo(x, rng=s).mean() for s in range(10)])
    ll = trained.log_likelihood(x, k=500, rng=0)
    assert ll.shape == (300,)
    assert elbo < ll.mean()
    # k = 1: log w of one sample, whose expectation is the ELBO
    ll1 = np.concatenate([trained.log_likelihood(x, k=1, rng=s) for s in range(20)])
    e1 = np.concatenate([trained.elbo(x, rng=100 + s) for s in range(20)])
    se = np.hypot(ll1.std(), e1.std()) / np.sqrt(len(ll1))
    assert abs(ll1.mean() - e1.mean()) < 4 * se
    assert trained.score(x) == pytest.approx(elbo, abs=0.3)


def test_save_load_round_trip(tmp_path, data, trained):
    x, _ = data
    path = tmp_path / "model.npz"
    trained.save(path)
    back = VAE.load(path)
    assert type(back) is VAE and back.config() == trained.config()
    for a, b in zip(trained.encode(x), back.encode(x), strict=True):
        np.testing.assert_array_equal(a, b)
    assert back.history_ == trained.history_
    f32 = VAE(latent_dim=3, hidden=(8, 4), activation="tanh", likelihood="gaussian-diag",
              input_dim=5)
    f32.save(tmp_path / "g.npz")
    g = VAE.load(tmp_path / "g.npz")
    np.testing.assert_array_equal(g.params.data, f32.params.data)
    assert g.params.dtype == np.float32 and g.likelihood.name == "gaussian-diag"


def test_likelihood_settings_are_saved_by_the_likelihood(tmp_path):
    m = VAE(input_dim=5, latent_dim=2, hidden=(4,), likelihood="gaussian", variance=0.3).build(5)
    assert m.config()["likelihood"] == {"name": "gaussian", "variance": 0.3}
    assert "variance" not in m.config()  # no special case for one likelihood's setting
    m.save(tmp_path / "m.npz")
    back = VAE.load(tmp_path / "m.npz")
    assert back.likelihood.variance == 0.3 and back.config() == m.config()
    assert VAE(**m.config()).build(5).likelihood.spec() == m.likelihood.spec()
    assert VAE(input_dim=5, latent_dim=2).build(5).config()["likelihood"] == {"name": "bernoulli"}
    with pytest.raises(ValueError, match="takes no variance"):
        VAE(input_dim=5, latent_dim=2, likelihood={"name": "bernoulli", "variance": 2.0}).build(5)


def test_a_checkpoints_likelihood_spec_is_checked(tmp_path):
    m = VAE(input_dim=5, latent_dim=2, hidden=(4,), likelihood="gaussian", variance=0.3).build(5)
    m.save(tmp_path / "m.npz")
    arrays, config, _ = load_checkpoint(tmp_path / "m.npz")
    for bad, match in (({"name": "gaussian", "variance": "10"}, "likelihood.variance"),
                       ({"name": "gaussian", "variance": -1.0}, "likelihood.variance"),
                       ({"name": "gaussian", "scale": 2.0}, "takes no option"),
                       ({"name": "poisson"}, "must be one of")):
        save_checkpoint(tmp_path / "bad.npz", arrays, {**config, "likelihood": bad})
        with pytest.raises(CheckpointError, match=match):
            VAE.load(tmp_path / "bad.npz")


def old_format(config):
    """A config as checkpoints wrote it before the likelihood saved its own settings."""
    lik = dict(config["likelihood"])
    return {**config, "likelihood": lik.pop("name"), "variance": lik.get("variance", 1.0)}


@pytest.mark.parametrize("lik", ["gaussian", "gaussian-scalar", "bernoulli"])
def test_older_checkpoints_still_load_and_resume(tmp_path, lik):
    """Older checkpoints: the likelihood's name and a separate variance."""
    x = np.random.default_rng(0).random((40, 5))
    m = VAE(input_dim=5, latent_dim=2, hidden=(4,), likelihood=lik, variance=0.3, seed=1)
    kw = dict(batch_size=10, lr_schedule=None, progress=False)  # a schedule needs fixed epochs
    m.fit(x, epochs=1, checkpoint_path=tmp_path / "run.npz", **kw)
    arrays, config, _ = load_checkpoint(tmp_path / "run.npz")
    save_checkpoint(tmp_path / "old.npz", arrays, old_format(config))
    back = VAE.load(tmp_path / "old.npz")
    assert back.likelihood.spec() == m.likelihood.spec()
    np.testing.assert_array_equal(back.params.data, m.params.data)
    resumed = VAE(input_dim=5, latent_dim=2, hidden=(4,), likelihood=lik, variance=0.3, seed=1)
    resumed.fit(x, epochs=2, checkpoint_path=tmp_path / "old.npz", resume=True, **kw)
    straight = VAE(input_dim=5, latent_dim=2, hidden=(4,), likelihood=lik, variance=0.3, seed=1)
    straight.fit(x, epochs=2, **kw)
    np.testing.assert_array_equal(resumed.params.data, straight.params.data)


def test_load_mismatched_checkpoint_raises(tmp_path, trained):
    path = tmp_path / "model.npz"
    trained.save(path)
    arrays, config, _ = load_checkpoint(path)
    save_checkpoint(tmp_path / "bad.npz", arrays, {**config, "latent_dim": 3})
    with pytest.raises(CheckpointError, match="does not fit the model"):
        VAE.load(tmp_path / "bad.npz")
    arrays["params/extra.W"] = np.zeros(3)
    save_checkpoint(tmp_path / "extra.npz", arrays, config)
    with pytest.raises(CheckpointError, match="extra.W"):
        VAE.load(tmp_path / "extra.npz")
    trunc = tmp_path / "trunc.npz"
    trunc.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated"):
        VAE.load(trunc)


@pytest.mark.parametrize("kwargs, match", [
    ({"epochs": 0}, "epochs must be >= 1"),
    ({"batch_size": 0}, "batch_size must be >= 1"),
    ({"lr": -1.0}, "lr must be"),
    ({"optimizer": "adamw"}, "optimizer must be one of 'adam', 'sgd'"),
    ({"lr_schedule": "linear"}, "lr_schedule must be one of None, 'cosine', 'step'"),
    ({"binarize": "yes"}, "binarize must be one of None, 'stochastic'"),
    ({"early_stopping_patience": 2}, "early_stopping_patience needs validation_data"),
    ({"resume": True}, "resume=True needs checkpoint_path"),
    ({"validation_data": (1, 2, 3)}, r"validation_data must be \(X_val,\)"),
    ({"checkpoint_every": 0}, "checkpoint_every must be >= 1"),
    ({"seed": -1}, "seed must be a non-negative integer"),
])
def test_bad_hyper_parameters(data, kwargs, match):
    x, _ = data
    with pytest.raises(ValueError, match=match):
        small().fit(x, progress=False, **kwargs)


def test_bad_data_raises_before_work(data, trained):
    x, _ = data
    bad = x.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        small().fit(bad, progress=False)
    with pytest.raises(ValueError, match="2-D"):
        small().fit(x[0], progress=False)
    with pytest.raises(ValueError, match="Bernoulli"):
        small().fit(x * 3, progress=False)
    with pytest.raises(ValueError, match="is expecting"):
        trained.transform(x[:, :5])
    with pytest.raises(ValueError, match="binarize"):
        small(likelihood="gaussian").fit(x * 3, binarize="stochastic", progress=False)


def test_conditional_model(data):
    x, labels = data
    y = np.eye(4)[labels]
    m = VAE(latent_dim=2, hidden=(16,), cond_dim=4, dtype="float64")
    m.fit(x, y, epochs=3, batch_size=64, progress=False, validation_data=(x[:40], y[:40]))
    assert m.history_[-1]["val_loss"] is not None
    assert m.sample(4, y=np.eye(4), rng=0).shape == (4, 16)
    assert m.log_likelihood(x[:10], y[:10], k=5, rng=0).shape == (10,)
    with pytest.raises(ValueError, match="conditional model needs y"):
        m.transform(x)


def test_warm_start_keeps_weights(data):
    x, _ = data
    m = small().fit(x, epochs=2, progress=False)
    before = m.params.data.copy()
    m.fit(x, epochs=1, progress=False, warm_start=True)
    assert not np.array_equal(m.params.data, small().fit(x, epochs=1, progress=False)
                              .params.data)
    m.fit(x, epochs=2, progress=False)  # a plain fit re-initialises: same as the first
    np.testing.assert_array_equal(m.params.data, before)
