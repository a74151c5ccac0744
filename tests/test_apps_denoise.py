"""De-noising training: the corruptions, fit(corruption=...), exact resume, denoise()."""

import os
import signal

import numpy as np
import pytest

from npvae import VAE, VAEModel
from npvae.apps import corrupt
from npvae.training.checkpoint import load_checkpoint
from npvae.training.trainer import Callback

FIT = {"batch_size": 64, "progress": False}


@pytest.fixture(scope="module")
def x():
    rng = np.random.default_rng(0)
    protos = (rng.random((4, 16)) < 0.5).astype(np.float64)
    return np.abs(protos[rng.integers(0, 4, 300)] - (rng.random((300, 16)) < 0.05))


def model(**kw):
    return VAE(**{"latent_dim": 3, "hidden": (16,), **kw})


def test_corruption_statistics():
    X = np.full((200, 500), 0.5)
    m = corrupt(X, "mask", 0.3, 0)
    assert set(np.unique(m)) == {0.0, 0.5} and abs((m == 0).mean() - 0.3) < 0.01
    sp = corrupt(X, "salt-pepper", 0.2, 0)
    assert abs((sp == 0).mean() - 0.1) < 0.01 and abs((sp == 1).mean() - 0.1) < 0.01
    g = corrupt(X, "gaussian", 0.2, 0) - X
    assert abs(g.mean()) < 0.005 and abs(g.std() - 0.2) < 0.005
    np.testing.assert_array_equal(corrupt(X, "mask", 0.3, 5), corrupt(X, "mask", 0.3, 5))
    np.testing.assert_array_equal(corrupt(X, "gaussian", 0.0, 5), X)
    out = np.empty((200, 500), np.float32)
    assert corrupt(X.astype(np.float32), "mask", 0.3, 0, out=out) is out
    assert corrupt(np.ones((2, 2), int), "mask", 0.5, 0).dtype == np.float64


@pytest.mark.parametrize("kind,level,err", [("blur", 0.1, ValueError), ("mask", 1.5, ValueError),
                                            ("gaussian", -1.0, ValueError),
                                            ("mask", "0.1", TypeError)])
def test_bad_corruption_arguments(x, kind, level, err):
    with pytest.raises(err):
        corrupt(x, kind, level, 0)
    with pytest.raises(err):
        model().fit(x, epochs=1, corruption=kind, corruption_level=level, **FIT)


def test_corruption_changes_training_and_scores_the_clean_target(x, monkeypatch):
    plain = model().fit(x, epochs=2, **FIT)
    seen = []
    orig = VAEModel.loss_and_grad  # a VAE's step runs on its core model

    def spy(self, xb, y=None, **kw):
        seen.append((xb.copy(), None if kw.get("target") is None else kw["target"].copy()))
        return orig(self, xb, y, **kw)

    monkeypatch.setattr(VAEModel, "loss_and_grad", spy)
    noisy = model().fit(x, epochs=2, corruption="mask", corruption_level=0.5, **FIT)
    assert not np.array_equal(plain.params.data, noisy.params.data)
    xb, target = seen[0]
    assert target is not None and xb.shape == target.shape
    assert np.all((xb == target) | (xb == 0)) and (xb != target).any()
    assert any(np.all((t == 0) | (t == 1)) for _, t in seen)  # the clean (binary) rows


def test_corrupted_run_is_reproducible_and_resumes_exactly(tmp_path, x):
    kw = {**FIT, "epochs": 4, "corruption": "salt-pepper", "corruption_level": 0.2,
          "binarize": "stochastic"}
    straight = model().fit(x, **kw)
    np.testing.assert_array_equal(model().fit(x, **kw).params.data, straight.params.data)

    class KillAt(Callback):
        def on_step_end(self, trainer, step, parts):
            if step == 7:
                os.kill(os.getpid(), signal.SIGINT)

    path = tmp_path / "run.npz"
    m = model().fit(x, checkpoint_path=path, callbacks=[KillAt()], **kw)
    assert m.stop_reason_ == "interrupted"
    _, config, _ = load_checkpoint(path)
    assert "corrupt" in config["training"]["rng"]
    assert config["training"]["settings"]["corruption"] == "salt-pepper"
    resumed = model().fit(x, checkpoint_path=path, resume=True, **kw)
    np.testing.assert_array_equal(resumed.params.data, straight.params.data)
    with pytest.warns(UserWarning, match="corruption"):
        model().fit(x, checkpoint_path=path, resume=True, **{**kw, "corruption": "mask"})


def test_uncorrupted_runs_unchanged_by_the_extra_stream(x):
    """The corruption stream is a 5th child of the same SeedSequence: the first four (and
    so every run without corruption) are what they were."""
    import npvae.training.trainer as tr
    t = tr.Trainer(model(), seed=3)
    t.model.build(16)
    t._reset()
    ss = np.random.SeedSequence([3, 0x6E70]).spawn(4)
    assert t.rng_noise.bit_generator.state == np.random.default_rng(ss[1]).bit_generator.state


def test_denoise_accepts_inputs_outside_the_support(x):
    m = model().fit(x, epochs=1, corruption="gaussian", corruption_level=0.5, **FIT)
    noisy = corrupt(x[:10], "gaussian", 0.5, 1)
    assert noisy.min() < 0 and noisy.max() > 1
    out = m.denoise(noisy)
    assert out.shape == (10, 16) and np.all((out >= 0) & (out <= 1))
    np.testing.assert_allclose(m.denoise(x[:10]), m.reconstruct(x[:10]), rtol=1e-6)
    with pytest.raises(ValueError, match="Bernoulli"):
        m.reconstruct(noisy)
    with pytest.raises(ValueError, match="NaN"):
        m.denoise(np.full((2, 16), np.nan))
