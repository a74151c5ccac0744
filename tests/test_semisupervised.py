"""SemiSupervisedVAE, M1M2 and the baselines: semi-supervised learning beats the labels alone
on a toy problem, the batches hold what the docstring says, the scikit-learn surface,
save/load, seeds, and the softmax regression against scikit-learn's."""

import numpy as np
import pytest

from npvae import M1M2, VAE, SemiSupervisedVAE
from npvae.apps.semisupervised import analogies, conditional_samples
from npvae.core.m2 import M2Model
from npvae.training.baselines import SoftmaxRegression, fit_classifier
from npvae.training.semisupervised import balanced_labels


def blobs(seed=0, n=300, d=20, k=3):
    """k Gaussian clusters 3 apart in the first two of d dimensions, unit noise in all."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    means = np.zeros((k, d))
    ang = 2 * np.pi * np.arange(k) / k
    means[:, 0], means[:, 1] = 3 * np.cos(ang), 3 * np.sin(ang)
    return means[y] + rng.standard_normal((n, d)), y


def test_unlabelled_data_beats_the_labels_alone_on_separable_blobs():
    """Two labels per class in 20 dimensions: the classifier alone fits the noise; M2 finds
    the clusters from the unlabelled rows (the Bayes rate is about 0.97)."""
    x, y = blobs()
    ys = np.full(len(y), -1)
    ys[:6] = y[:6]
    alone = fit_classifier(x, ys, 3, hidden=(16,), epochs=100).score(x, y)
    m2 = SemiSupervisedVAE(3, latent_dim=2, hidden=(16,), likelihood="gaussian", seed=0)
    m2.fit(x, ys, epochs=100, batch_size=50, lr=3e-3, progress=False)
    acc = m2.score(x, y)
    assert alone < 0.7 and acc > 0.9, (alone, acc)


def recorded_batches(monkeypatch):
    seen = []
    original = M2Model.loss_and_grad

    def spy(self, x, y, **kw):
        seen.append((np.array(y), np.array(kw["sample_weight"])))
        return original(self, x, y, **kw)

    monkeypatch.setattr(M2Model, "loss_and_grad", spy)
    return seen


@pytest.mark.parametrize("weighting", ["batch", "dataset"])
def test_every_step_sees_labelled_and_unlabelled_rows(weighting, monkeypatch):
    x, y = blobs(n=60)
    ys = np.full(60, -1)
    ys[:7] = y[:7]  # 7 labelled, 53 unlabelled
    model = SemiSupervisedVAE(3, 20, 2, hidden=(4,), likelihood="gaussian")
    seen = recorded_batches(monkeypatch)
    model.fit(x, ys, epochs=2, batch_size=20, labelled_batch_size=5, progress=False,
              weighting=weighting)
    assert len(seen) == 2 * 3  # ceil(53 / 20) steps per epoch
    for labels, w in seen:
        lab = labels >= 0
        assert lab.sum() == 5 and (~lab).sum() in (20, 13)
        wl, wu = w[lab].sum(), w[~lab].sum()
        want = (1.0, 1.0) if weighting == "batch" else (7 / 60, 53 / 60)
        assert (wl, wu) == pytest.approx(want, rel=1e-12)
    # the labelled stream cycles: every 7 labelled rows drawn hold each labelled label once
    stream = np.concatenate([labels[labels >= 0] for labels, _ in seen])
    for start in range(0, len(stream) - 6, 7):
        assert sorted(stream[start:start + 7]) == sorted(ys[:7])


def test_sklearn_surface_and_save_load(tmp_path):
    x, y = blobs(n=90)
    ys = balanced_labels(y, 9, np.random.default_rng(0))
    assert np.bincount(ys[ys >= 0]).tolist() == [3, 3, 3] and (ys == -1).sum() == 81
    model = SemiSupervisedVAE(latent_dim=2, hidden=(5,), likelihood="gaussian-diag", seed=1)
    assert model.fit(x, ys, epochs=2, validation_data=(x[:30], y[:30]), test_data=(x, y),
                     progress=False) is model
    assert model.n_classes == 3 and model.classes_.tolist() == [0, 1, 2]
    assert model.alpha_ == pytest.approx(0.1 * 90 / 9)
    assert len(model.history_) == 2 and model.best_epoch_ in (1, 2)
    assert all(r["test_accuracy"] is not None for r in model.history_)
    p = model.predict_proba(x)
    assert p.shape == (90, 3) and np.allclose(p.sum(1), 1, atol=1e-5)
    assert np.array_equal(model.predict(x), p.argmax(1))
    assert model.score(x, y) == np.mean(model.predict(x) == y)
    z = model.transform(x)
    assert z.shape == (90, 2)
    np.testing.assert_allclose(model.transform(x[:4], y[:4]), model.encode(x[:4], y[:4])[0])
    assert model.sample(5, y=2, rng=0).shape == (5, 20)
    model.save(tmp_path / "m2.npz")
    back = SemiSupervisedVAE.load(tmp_path / "m2.npz")
    np.testing.assert_array_equal(back.predict_proba(x), p)
    np.testing.assert_array_equal(back.sample(4, y=[0, 1, 2, 0], rng=3),
                                  model.sample(4, y=[0, 1, 2, 0], rng=3))
    assert back.history_ == model.history_ and back.alpha_ == model.alpha_


def test_same_seed_same_weights_and_bad_input_is_named():
    x, y = blobs(n=40)
    ys = np.where(np.arange(40) < 6, y, -1)
    fits = [SemiSupervisedVAE(3, latent_dim=2, hidden=(4,), likelihood="gaussian", seed=5)
            .fit(x, ys, epochs=2, progress=False).params.data for _ in range(2)]
    np.testing.assert_array_equal(*fits)
    model = SemiSupervisedVAE(3, latent_dim=2, hidden=(4,), likelihood="gaussian")
    with pytest.raises(ValueError, match="no labelled rows"):
        model.fit(x, np.full(40, -1), progress=False)
    with pytest.raises(ValueError, match=r"found 3 at row"):
        model.fit(x, np.where(ys == 2, 3, ys), progress=False)
    with pytest.raises(ValueError, match="every row labelled"):
        model.fit(x, ys, validation_data=x, progress=False)
    with pytest.raises(ValueError, match="weighting"):
        model.fit(x, ys, weighting="mean", progress=False)
    with pytest.raises(ValueError, match="multiple of the 3 classes"):
        balanced_labels(y, 7, np.random.default_rng(0))


def test_m1m2_fits_predicts_and_round_trips(tmp_path):
    x, y = blobs(n=60)
    x = 1 / (1 + np.exp(-x))  # into [0, 1] for M1's Bernoulli likelihood
    ys = np.where(np.arange(60) < 6, y, -1)
    mm = M1M2(VAE(latent_dim=3, hidden=(8,)),
              SemiSupervisedVAE(3, latent_dim=2, hidden=(4,), likelihood="gaussian"))
    mm.fit(x, ys, m1_fit={"epochs": 2, "progress": False}, epochs=2, progress=False,
           validation_data=(x, y))
    assert mm.predict(x).shape == (60,) and 0 <= mm.score(x, y) <= 1
    assert mm.sample(4, y=1, rng=0).shape == (4, 20) and mm.transform(x).shape == (60, 2)
    mm.save(tmp_path / "mm.npz")
    back = M1M2.load(tmp_path / "mm.npz")
    np.testing.assert_array_equal(back.predict_proba(x), mm.predict_proba(x))
    # one fitted M1 serves another label set, unchanged
    before = mm.m1_.params.data.copy()
    other = M1M2(mm.m1_, SemiSupervisedVAE(3, latent_dim=2, hidden=(4,), likelihood="gaussian"))
    other.fit(x, np.where(np.arange(60) >= 54, y, -1), fit_m1=False, epochs=1, progress=False)
    np.testing.assert_array_equal(mm.m1_.params.data, before)
    with pytest.raises(ValueError, match="fitted already"):
        M1M2(VAE()).fit(x, ys, fit_m1=False)
    # analogies: the style of each row decoded as every class
    grid = analogies(mm, x[:2])
    assert grid.shape == (2, 3, 20)
    np.testing.assert_allclose(grid[1, 2], mm.decode(mm.transform(x[1:2]), [2])[0], rtol=1e-6)
    images, labels = conditional_samples(mm, 4, rng=0)
    assert images.shape == (12, 20) and labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    z = np.random.default_rng(0).standard_normal((4, 2))  # shared: one z per column
    np.testing.assert_allclose(images[8:], mm.decode(z, [2] * 4), rtol=1e-6)


def test_softmax_regression_is_scikit_learns():
    """Ours minimises (1/N) sum CE + (l2/2) |W|^2: scikit-learn's C = 1 / (l2 N)."""
    linear = pytest.importorskip("sklearn.linear_model")
    x, y = blobs(n=120, d=4)
    ours = SoftmaxRegression(l2=0.1, max_iter=1000).fit(x, y)
    xs = (x - ours.mean_) / ours.scale_
    ref = linear.LogisticRegression(C=1 / (0.1 * len(x)), tol=1e-10, max_iter=5000).fit(xs, y)
    np.testing.assert_allclose(ours.predict_proba(x), ref.predict_proba(xs), atol=1e-5)


def test_scikit_learn_protocol_clone_and_pickle():
    import pickle

    base = pytest.importorskip("sklearn.base")
    model = SemiSupervisedVAE(latent_dim=2, hidden=(4,), likelihood="gaussian", alpha=3.0)
    assert model.get_params()["n_classes"] is None and "_core" not in model.__dict__
    twin = base.clone(model)
    assert twin.get_params() == model.get_params()
    with pytest.raises(AttributeError, match="no weights yet"):
        model.predict(np.zeros((2, 20)))
    x, y = blobs(n=30)
    model.fit(x, np.where(np.arange(30) < 6, y, -1), epochs=1, progress=False)
    assert model.n_features_in_ == 20 and model.alpha_ == 3.0
    assert base.is_classifier(model)
    back = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(back.predict_proba(x), model.predict_proba(x))


# ----------------------------------------------------------------------------- hostile files
@pytest.fixture
def saved_m2(tmp_path):
    x, y = blobs(n=30)
    path = tmp_path / "m2.npz"
    SemiSupervisedVAE(3, latent_dim=2, hidden=(4,), likelihood="gaussian").fit(
        x, np.where(np.arange(30) < 6, y, -1), epochs=1, progress=False).save(path)
    return path


@pytest.mark.parametrize("key, value, match", [
    ("classifier_hidden", [10**9], "memory"), ("input_dim", 10**9, "memory"),
    ("dtype", None, "dtype"), ("n_classes", 1, "n_classes"), ("alpha", "x", "alpha"),
    ("likelihood", "poisson", "likelihood"), ("history", {"a": 1}, "history"),
])
def test_damaged_m2_config_is_refused_before_reading_arrays(saved_m2, key, value, match):
    from npvae.training.checkpoint import CheckpointError
    from tests import hostile as h

    h.edit_meta(saved_m2, lambda m: m["config"].__setitem__(key, value))
    with h.peak_memory(16 << 20), pytest.raises(CheckpointError, match=match) as exc:
        SemiSupervisedVAE.load(saved_m2)
    assert str(saved_m2) in str(exc.value) and len(str(exc.value).splitlines()) == 1


def test_m2_arrays_must_fit_the_config(saved_m2):
    from npvae.training.checkpoint import CheckpointError
    from tests import hostile as h

    h.edit_meta(saved_m2, lambda m: m["config"].__setitem__("latent_dim", 3))
    with pytest.raises(CheckpointError, match="does not fit the model"):
        SemiSupervisedVAE.load(saved_m2)
