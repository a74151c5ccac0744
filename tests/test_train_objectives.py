"""Training on the importance-weighted objectives: fit runs train_step with them, the objective
and k are saved in the checkpoint and a resumed run equals an uninterrupted one, validation
reports the bound trained on, conditional models train, bad settings are refused."""

import warnings

import numpy as np
import pytest

from npvae.core.model import VAEModel
from npvae.inference.metrics import EVAL_SEED, iwae_log_likelihood
from npvae.training.checkpoint import load_checkpoint, save_checkpoint
from tests.test_train import FIT, KillAt, model, prototypes, without_seconds


@pytest.fixture(scope="module")
def x():
    return prototypes(n=150)


@pytest.mark.parametrize("objective", ["iwae", "iwae-dreg"])
def test_fit_trains_on_the_bound_through_train_step(objective, x, monkeypatch):
    calls = []
    real = VAEModel.train_step
    monkeypatch.setattr(VAEModel, "train_step",
                        lambda self, *a, **kw: calls.append(kw) or real(self, *a, **kw))
    m = model().fit(x, epochs=3, objective=objective, k=4, validation_data=(x[:40],), lr=1e-2,
                    **FIT)
    assert len(calls) == 3 * 3 and {(c["objective"], c["k"]) for c in calls} == {(objective, 4)}
    first, last = m.history_[0], m.history_[-1]
    assert last["train_loss"] < first["train_loss"]
    for rec in m.history_:  # log-mean-exp >= mean: the bound is above the same draws' ELBO
        assert rec["train_loss"] <= rec["train_recon"] + rec["train_kl"]
    want = -iwae_log_likelihood(m, x[:40], k=4, rng=np.random.default_rng(EVAL_SEED)).mean()
    assert last["val_loss"] == pytest.approx(want, rel=1e-12)
    assert last["val_loss"] < last["val_recon"] + last["val_kl"]


def test_checkpoint_holds_the_objective_and_resumes_exactly(tmp_path, x):
    kw = {**FIT, "objective": "iwae-dreg", "k": 3, "validation_data": (x[:30],),
          "early_stopping_patience": 5, "lr_schedule": None}  # a schedule depends on epochs
    straight = model().fit(x, epochs=4, **kw)
    path = tmp_path / "run.npz"
    model().fit(x, epochs=2, checkpoint_path=path, **kw)
    settings = load_checkpoint(path)[1]["training"]["settings"]
    assert (settings["objective"], settings["k"]) == ("iwae-dreg", 3)
    resumed = model().fit(x, epochs=4, checkpoint_path=path, resume=True, **kw)
    np.testing.assert_array_equal(resumed.params.data, straight.params.data)
    assert without_seconds(resumed.history_) == without_seconds(straight.history_)
    assert not np.array_equal(straight.params.data, model().fit(
        x, epochs=4, **{**kw, "objective": "iwae"}).params.data)


def test_interrupted_mid_epoch_resumes_exactly(tmp_path, x):
    kw = {**FIT, "epochs": 3, "objective": "iwae", "k": 2, "lr_schedule": "cosine"}
    straight = model(n_samples=2).fit(x, **kw)
    path = tmp_path / "run.npz"
    cut = model(n_samples=2).fit(x, checkpoint_path=path, callbacks=[KillAt(4)], **kw)
    assert cut.stop_reason_ == "interrupted"
    resumed = model(n_samples=2).fit(x, checkpoint_path=path, resume=True, **kw)
    np.testing.assert_array_equal(resumed.params.data, straight.params.data)
    assert without_seconds(resumed.history_) == without_seconds(straight.history_)


def test_resuming_with_another_objective_warns_and_old_checkpoints_read_as_elbo(tmp_path, x):
    path = tmp_path / "run.npz"
    fit = {**FIT, "lr_schedule": None}  # a schedule would warn of the changed epochs
    model().fit(x, epochs=1, checkpoint_path=path, **fit)
    for changed in ({"objective": "iwae"}, {"objective": "iwae", "k": 7}):
        other = tmp_path / "other.npz"
        other.write_bytes(path.read_bytes())
        with pytest.warns(UserWarning, match="different objective"):
            model().fit(x, epochs=2, checkpoint_path=other, resume=True, **changed, **fit)
    arrays, config, _ = load_checkpoint(path)  # a checkpoint from before the objectives
    for key in ("objective", "k"):
        del config["training"]["settings"][key]
    save_checkpoint(path, arrays, config)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model().fit(x, epochs=2, checkpoint_path=path, resume=True, **fit)


def test_conditional_model_trains_on_the_bound(x):
    y = np.eye(3)[np.arange(len(x)) % 3]
    m = model(cond_dim=3).fit(x, y, epochs=2, objective="iwae-dreg", k=3, lr=1e-2, **FIT)
    assert m.history_[-1]["train_loss"] < m.history_[0]["train_loss"]
    assert np.isfinite(m.log_likelihood(x[:10], y[:10], k=5)).all()


def test_bad_settings_are_refused_before_training(x):
    m = model()
    with pytest.raises(ValueError, match="free_bits=0"):
        m.fit(x, epochs=1, objective="iwae", free_bits=0.5, **FIT)
    assert not hasattr(m, "history_")  # no step was taken
    with pytest.raises(ValueError, match="free_bits=0"):
        model(free_bits=0.5).fit(x, epochs=1, objective="iwae-dreg", **FIT)
    with pytest.raises(ValueError, match="n_samples"):
        model().fit(x, epochs=1, k=5, **FIT)
    with pytest.raises(ValueError, match="objective must be one of"):
        model().fit(x, epochs=1, objective="m2", **FIT)


def test_one_mpi_rank_equals_no_communicator_bit_for_bit(x, tmp_path):
    """The data-parallel path draws the L k samples' noise for the global batch; with one
    rank (MPI.COMM_SELF) it must be the plain IWAE run exactly, validation bound included."""
    mpi = pytest.importorskip("mpi4py.MPI", reason="mpi4py is not installed")
    from npvae.training.distributed import DataParallel

    kw = {**FIT, "epochs": 2, "objective": "iwae-dreg", "k": 3, "validation_data": (x[:30],),
          "threads": 1}
    plain = model(n_samples=2).fit(x, **kw)
    one = model(n_samples=2).fit(x, **kw, comm=DataParallel(mpi.COMM_SELF, check_every=1))
    np.testing.assert_array_equal(one.params.data, plain.params.data)
    assert without_seconds(one.history_) == without_seconds(plain.history_)
