"""The training loop: reproducibility, exact resume, Ctrl-C, divergence, early stopping,
KL warm-up and lr schedules."""

import os
import signal
import threading

import numpy as np
import pytest

import npvae.training.trainer as train_mod
from npvae.core.model import VAEModel
from npvae.training.checkpoint import CheckpointError, load_checkpoint
from npvae.training.estimator import VAE
from npvae.training.trainer import Callback, TrainingDiverged, lr_factor

# 300 rows in batches of 64: 5 steps per epoch, the last one of 44 rows
FIT = {"batch_size": 64, "progress": False}


def prototypes(n=300, d=16, flip=0.05, seed=0):
    rng = np.random.default_rng(seed)
    protos = (rng.random((4, d)) < 0.5).astype(np.float64)
    x = np.abs(protos[rng.integers(0, 4, n)] - (rng.random((n, d)) < flip))
    return x


@pytest.fixture(scope="module")
def x():
    return prototypes()


def model(dtype="float32", **kw):
    return VAE(**{"latent_dim": 3, "hidden": (16,), "dtype": dtype, **kw})


def without_seconds(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def test_same_seed_bit_identical(x):
    kw = {**FIT, "epochs": 3, "binarize": "stochastic", "seed": 7}
    a = model().fit(x, **kw)
    b = model().fit(x, **kw)
    np.testing.assert_array_equal(a.params.data, b.params.data)
    assert without_seconds(a.history_) == without_seconds(b.history_)
    c = model().fit(x, **{**kw, "seed": 8})
    assert not np.array_equal(a.params.data, c.params.data)


def test_resume_from_epoch_boundary_is_exact(tmp_path, x):
    kw = {**FIT, "binarize": "stochastic", "kl_warmup_epochs": 3, "validation_data": (x[:50],),
          "early_stopping_patience": 10, "lr_schedule": None}  # a schedule would depend on epochs
    straight = model().fit(x, epochs=4, **kw)
    path = tmp_path / "run.npz"
    model().fit(x, epochs=2, checkpoint_path=path, **kw)
    _, config, _ = load_checkpoint(path)
    assert config["training"]["epoch"] == 2 and config["training"]["step"] == 10
    resumed = model().fit(x, epochs=4, checkpoint_path=path, resume=True, **kw)
    np.testing.assert_array_equal(resumed.params.data, straight.params.data)
    assert without_seconds(resumed.history_) == without_seconds(straight.history_)


class KillAt(Callback):
    def __init__(self, step, sig=signal.SIGINT):
        self.step, self.sig = step, sig

    def on_step_end(self, trainer, step, parts):
        if step == self.step:
            os.kill(os.getpid(), self.sig)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_epoch_checkpoints_and_resumes_exactly(tmp_path, x, sig):
    kw = {**FIT, "epochs": 4, "lr_schedule": "cosine", "binarize": "stochastic"}
    straight = model().fit(x, **kw)
    path = tmp_path / "run.npz"
    before = signal.getsignal(sig)
    m = model().fit(x, checkpoint_path=path, callbacks=[KillAt(7, sig)], **kw)
    assert signal.getsignal(sig) is before  # handlers restored
    assert m.stop_reason_ == "interrupted"
    assert m.history_[-1]["interrupted"] is True and m.history_[-1]["epoch"] == 2
    assert len(m.history_) == 2
    _, config, _ = load_checkpoint(path)
    tr = config["training"]
    assert (tr["epoch"], tr["step"], tr["step_in_epoch"]) == (1, 7, 2)
    assert len(config["history"]) == 1  # only complete epochs
    resumed = model().fit(x, checkpoint_path=path, resume=True, **kw)
    np.testing.assert_array_equal(resumed.params.data, straight.params.data)
    assert without_seconds(resumed.history_) == without_seconds(straight.history_)


def test_signal_on_last_step_of_epoch(tmp_path, x):
    straight = model().fit(x, epochs=3, **FIT)
    path = tmp_path / "run.npz"
    m = model().fit(x, epochs=3, checkpoint_path=path, callbacks=[KillAt(5)], **FIT)
    # the epoch completed, so it is not marked interrupted (the run is)
    assert m.stop_reason_ == "interrupted" and "interrupted" not in m.history_[-1]
    _, config, _ = load_checkpoint(path)
    assert config["training"]["epoch"] == 1 and config["training"]["step_in_epoch"] == 0
    assert "interrupted" not in config["history"][0]
    resumed = model().fit(x, epochs=3, checkpoint_path=path, resume=True, **FIT)
    np.testing.assert_array_equal(resumed.params.data, straight.params.data)
    assert without_seconds(resumed.history_) == without_seconds(straight.history_)


def test_fit_in_a_worker_thread(x):
    out = {}
    t = threading.Thread(target=lambda: out.update(m=model().fit(x, epochs=2, **FIT)))
    t.start()
    t.join()
    np.testing.assert_array_equal(out["m"].params.data, model().fit(x, epochs=2, **FIT)
                                  .params.data)


def test_callback_epochs_count_from_one_as_the_history_does(x):
    seen = []

    class Record(Callback):
        def on_epoch_begin(self, trainer, epoch):
            seen.append(("begin", epoch))

        def on_epoch_end(self, trainer, epoch, record):
            seen.append(("end", epoch, record["epoch"]))

    m = model().fit(x, epochs=3, callbacks=[Record()], **FIT)
    assert [r["epoch"] for r in m.history_] == [1, 2, 3]
    assert seen == [("begin", 1), ("end", 1, 1), ("begin", 2), ("end", 2, 2), ("begin", 3),
                    ("end", 3, 3)]


def test_callback_stop_at_epoch_end_then_resume(tmp_path, x):
    class StopAfterEpoch(Callback):
        def on_epoch_end(self, trainer, epoch, record):
            trainer.stop_training = epoch == 1

    straight = model().fit(x, epochs=3, **FIT)
    path = tmp_path / "run.npz"
    m = model().fit(x, epochs=3, checkpoint_path=path, callbacks=[StopAfterEpoch()], **FIT)
    assert m.stop_reason_ == "callback" and len(m.history_) == 1
    resumed = model().fit(x, epochs=3, checkpoint_path=path, resume=True, **FIT)
    np.testing.assert_array_equal(resumed.params.data, straight.params.data)


def test_divergence_rolls_back_and_keeps_checkpoint(tmp_path, x, monkeypatch):
    path = tmp_path / "run.npz"
    m = model()
    calls = {"n": 0}
    real = VAEModel.loss_and_grad  # a VAE's step runs on its core model

    def flaky(self, *args, **kw):
        loss, parts = real(self, *args, **kw)
        calls["n"] += 1
        return (float("nan") if calls["n"] == 8 else loss), parts

    monkeypatch.setattr(VAEModel, "loss_and_grad", flaky)
    seen = []
    cb = lambda model, rec: seen.append(model.params.data.copy())  # noqa: E731
    with pytest.raises(TrainingDiverged, match=r"epoch 2, step 8: the loss is nan"):
        m.fit(x, epochs=4, checkpoint_path=path, callbacks=[cb], **FIT)
    arrays, config, _ = load_checkpoint(path)
    assert config["training"]["epoch"] == 1
    np.testing.assert_array_equal(m.params.data, seen[0])  # rolled back to epoch 1's end
    assert np.all(np.isfinite(m.params.data))
    named = m.named_parameters()
    for name, v in named.items():
        np.testing.assert_array_equal(arrays[f"params/{name}"], v)
    assert m.stop_reason_ == "diverged" and len(m.history_) == 1


def test_nan_gradient_with_clipping_diverges(x, monkeypatch):
    real = VAEModel.loss_and_grad  # a VAE's step runs on its core model

    def bad_grad(self, *args, **kw):
        out = real(self, *args, **kw)
        self.params.grad[0] = np.inf
        return out

    monkeypatch.setattr(VAEModel, "loss_and_grad", bad_grad)
    m = model()
    with pytest.raises(TrainingDiverged, match="gradient contains NaN"):
        m.fit(x, epochs=1, clip_norm=1.0, **FIT)
    assert np.all(np.isfinite(m.params.data))


@pytest.mark.filterwarnings("ignore:(overflow|invalid value):RuntimeWarning")
def test_huge_lr_gaussian_diverges(x):
    m = model(likelihood="gaussian-scalar", dtype="float64")
    with pytest.raises(TrainingDiverged, match="roll|rolled"):
        m.fit(x * 1e3, epochs=5, lr=1e6, optimizer="sgd", **FIT)
    assert np.all(np.isfinite(m.params.data))


def test_early_stopping_restores_best(tmp_path, x, monkeypatch):
    scripted = iter([5.0, 4.0, 3.0, 3.5, 3.2, 1.0, 1.0])

    def fake_terms(model, X, y=None, *, n_samples=1, rng=None):
        v = next(scripted)
        return np.full(len(X), v), np.zeros(len(X))

    monkeypatch.setattr(train_mod, "elbo_terms", fake_terms)
    snaps = []
    kw = {**FIT, "epochs": 7, "validation_data": (x[:20],), "early_stopping_patience": 2,
          "checkpoint_path": tmp_path / "run.npz"}
    m = model().fit(x, callbacks=[lambda mdl, rec: snaps.append(mdl.params.data.copy())], **kw)
    assert m.stop_reason_ == "early_stopping"
    assert [r["val_loss"] for r in m.history_] == pytest.approx([5.0, 4.0, 3.0, 3.5, 3.2])
    assert m.best_epoch_ == 3
    np.testing.assert_array_equal(m.params.data, snaps[2])
    # the checkpoint holds the latest weights and the best apart; load gives what fit left
    np.testing.assert_array_equal(VAE.load(tmp_path / "run.npz").params.data, snaps[2])
    np.testing.assert_array_equal(VAE.load(tmp_path / "run.npz", best=False).params.data,
                                  snaps[4])
    # resuming a run that stopped early does nothing but restore the best weights
    again = model().fit(x, resume=True, **kw)
    assert again.stop_reason_ == "early_stopping" and len(again.history_) == 5
    np.testing.assert_array_equal(again.params.data, snaps[2])


def test_kl_warmup_recorded(x):
    m = model().fit(x, epochs=4, kl_warmup_epochs=2, **FIT)
    # beta of each epoch's last step: steps 4, 9, 14, 19 of a 10-step ramp
    assert [r["beta"] for r in m.history_] == [0.4, 0.9, 1.0, 1.0]
    m = model(beta=0.5).fit(x, epochs=1, **FIT)
    assert m.history_[0]["beta"] == 0.5


def test_lr_schedules(x):
    assert lr_factor(None, 5, 10) == 1.0
    assert lr_factor("cosine", 0, 10) == 1.0 and lr_factor("cosine", 5, 10) == pytest.approx(0.5)
    assert [lr_factor("step", s, 8) for s in (0, 3, 4, 5, 6, 7)] == [1, 1, .1, .1, .01, .01]
    assert lr_factor("exponential", 10, 10) == pytest.approx(0.01)
    assert lr_factor(lambda s, t: 0.25, 1, 2) == 0.25
    m = model().fit(x, epochs=2, lr=1e-2, lr_schedule="cosine", **FIT)
    assert m.history_[-1]["lr"] == pytest.approx(1e-2 * 0.5 * (1 + np.cos(np.pi * 9 / 10)))


def test_resume_checks(tmp_path, x):
    path = tmp_path / "run.npz"
    fresh = model().fit(x, epochs=1, checkpoint_path=path, resume=True, **FIT)  # no file yet
    np.testing.assert_array_equal(fresh.params.data, model().fit(x, epochs=1, **FIT).params.data)
    with pytest.raises(CheckpointError, match="latent_dim"):
        model(latent_dim=4).fit(x, epochs=2, checkpoint_path=path, resume=True, **FIT)
    with pytest.raises(CheckpointError, match="optimizer"):
        model().fit(x, epochs=2, checkpoint_path=path, resume=True, optimizer="sgd", **FIT)
    other = tmp_path / "other.npz"
    other.write_bytes(path.read_bytes())
    with pytest.warns(UserWarning, match="different lr"):
        model().fit(x, epochs=2, checkpoint_path=other, resume=True, lr=0.1, **FIT)
    with pytest.warns(UserWarning, match="epochs .the lr schedule depends on it"):  # cosine
        model().fit(x, epochs=2, checkpoint_path=path, resume=True, **FIT)
    done = model().fit(x, epochs=2, checkpoint_path=path, resume=True, **FIT)
    assert len(done.history_) == 2  # already at epoch 2: nothing left to do


def test_threads_and_progress_bar(x, capsys):
    numba = pytest.importorskip("numba")
    old = numba.get_num_threads()
    m = model().fit(x, epochs=2, batch_size=64, threads=1, progress=True)
    assert numba.get_num_threads() == old
    err = capsys.readouterr().err
    assert "epoch 2/2" in err and "loss=" in err
    assert len(m.history_) == 2


@pytest.mark.parametrize("batch_size", [1, 7])
def test_fit_runs_train_step_the_step_the_benchmark_times(batch_size, monkeypatch):
    """fit's steps are VAEModel.train_step's (at batch 1 the fused Adam path), and a hand
    loop of train_step over the trainer's batches and noise gives the same weights."""
    from npvae.core.model import VAEModel
    from npvae.core.optim import Adam

    x = prototypes(n=14, d=256)
    calls = []
    real = VAEModel.train_step
    monkeypatch.setattr(VAEModel, "train_step",
                        lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    kw = {"latent_dim": 3, "hidden": (128,), "seed": 3}  # 256 x 128 weights: fused at 1 row
    fitted = VAE(**kw).fit(x, epochs=1, batch_size=batch_size, lr=1e-3, lr_schedule=None,
                           progress=False)
    assert len(calls) == -(-len(x) // batch_size)
    monkeypatch.setattr(VAEModel, "train_step", real)

    by_hand = VAE(input_dim=256, **kw)
    opt = Adam(by_hand.params, lr=1e-3)
    ss = np.random.SeedSequence([3, 0x6E70]).spawn(5)  # the trainer's streams (train.py)
    shuffle, noise = np.random.default_rng(ss[0]), np.random.default_rng(ss[1])
    perm = shuffle.permutation(len(x))
    xs = x.astype(np.float32)
    for b in range(0, len(x), batch_size):
        by_hand.train_step(xs[perm[b:b + batch_size]], opt, rng=noise, beta=1.0,
                           free_bits=0.0, check_input=False)
    np.testing.assert_array_equal(fitted.params.data, by_hand.params.data)
