"""Data-parallel pieces that run in one process: shards, the train_step reduce hook, launcher
detection, and a one-rank communicator (``MPI.COMM_SELF``) against no communicator at all.
The multi-process tests, through ``mpiexec``, are in test_mpi.py."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npvae.core.optim import Adam
from npvae.training import distributed as dist
from npvae.training.checkpoint import load_checkpoint, save_checkpoint
from npvae.training.estimator import VAE
from npvae.training.trainer import CHECKPOINT_KIND, Callback


def data(n=150, d=16, seed=0):
    return (np.random.default_rng(seed).random((n, d)) < 0.3).astype(np.float32)


def model(**kw):
    return VAE(**{"latent_dim": 3, "hidden": (16,), "seed": 2, **kw})


@given(n=st.integers(0, 400), size=st.integers(1, 17))
def test_shards_cover_the_batch_in_order_and_differ_by_at_most_one(n, size):
    bounds = [dist.shard_bounds(n, size, r) for r in range(size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds[:-1], bounds[1:], strict=True))
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_reduce_sees_the_whole_gradient_even_at_batch_1():
    """At batch 1 train_step fuses the large weight gradients into Adam and never forms
    them; with ``reduce`` it must form every block before the reduction, and the update
    must be Adam's on the reduced gradient."""
    m, ref = (VAE(input_dim=784, latent_dim=20, hidden=(400,), seed=0)  # blocks fused at 1 row
              for _ in range(2))
    x = data(1, 784)
    noise = np.random.default_rng(1).standard_normal((1, 1, 20)).astype(np.float32)
    ref.loss_and_grad(x, noise=noise)
    expected = ref.params.grad.copy()
    ref_opt = Adam(ref.params)
    ref_opt.step()  # the unfused step on the full gradient
    seen = []

    def reduce(loss, parts):
        seen.append(m.params.grad.copy())
        return loss, parts

    m.train_step(x, Adam(m.params), noise=noise, reduce=reduce)
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], expected)
    np.testing.assert_array_equal(m.params.data, ref.params.data)


def test_reduce_that_returns_a_nan_loss_stops_before_the_update():
    m = model(input_dim=16)
    before = m.params.data.copy()
    with pytest.raises(FloatingPointError, match="no update"):
        m.train_step(data(8), Adam(m.params), reduce=lambda loss, parts: (float("nan"), parts))
    np.testing.assert_array_equal(m.params.data, before)


def test_fit_with_sgd():  # train_step gives SGD no deferred blocks
    m = model().fit(data(), epochs=1, batch_size=32, optimizer="sgd", progress=False)
    assert np.isfinite(m.history_[-1]["train_loss"])


@pytest.mark.parametrize("env, expected", [
    ({}, None),
    ({"PMI_SIZE": "4", "PMI_RANK": "3"}, (4, 3, "PMI_SIZE")),
    ({"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1"}, (2, 1, "OMPI_COMM_WORLD_SIZE")),
    ({"PMI_SIZE": "4", "NPVAE_MPI": "0"}, None),
    ({"NPVAE_MPI": "1"}, (None, None, "NPVAE_MPI")),
    ({"PMI_SIZE": "junk"}, None),
])
def test_launcher_detection(env, expected):
    assert dist.launched_world(env) == expected


def test_launched_without_mpi4py_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py now fails
    with pytest.raises(ImportError, match=r"pip install 'npvae\[mpi\]'"):
        dist.world_comm({"PMI_SIZE": "2", "PMI_RANK": "0"})
    assert dist.world_comm({}) is None


def test_not_a_communicator():
    with pytest.raises(TypeError, match="mpi4py communicator"):
        model().fit(data(), epochs=1, comm=object(), progress=False)


def test_resize_note():
    assert dist.resize_note(2, 2) is None
    assert "2 MPI process(es) with 4" in dist.resize_note(2, 4)


# --------------------------------------------------------------- one rank, COMM_SELF
@pytest.fixture(scope="module")
def comm_self():
    mpi = pytest.importorskip("mpi4py.MPI", reason="mpi4py is not installed (pip install "
                              "'npvae[mpi]')")
    return mpi.COMM_SELF


def without_seconds(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


class StopAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, trainer, step, parts):
        if step == self.step:
            trainer.stop_training = True


def test_one_rank_equals_no_communicator_bit_for_bit(comm_self, tmp_path):
    """With one rank the data-parallel path (full-batch noise, reduce hook, sharded
    validation, checksum) must be the plain run exactly, stop and resume included."""
    x, v = data(), data(40, seed=1)
    kw = {"epochs": 2, "batch_size": 32, "validation_data": (v,), "progress": False,
          "corruption": "mask", "threads": 1}
    plain = model(n_samples=2).fit(x, **kw)
    ckpt = tmp_path / "c.npz"
    one = model(n_samples=2).fit(x, **kw, comm=dist.DataParallel(comm_self, check_every=1),
                                 checkpoint_path=ckpt, callbacks=[StopAt(7)])
    assert one.stop_reason_ == "callback"
    one.fit(x, **kw, comm=comm_self, checkpoint_path=ckpt, resume=True)
    np.testing.assert_array_equal(one.params.data, plain.params.data)
    assert without_seconds(one.history_) == without_seconds(plain.history_)
    _, config, _ = load_checkpoint(ckpt)
    assert config["training"]["world_size"] == 1


def test_resuming_with_another_number_of_ranks_warns(comm_self, tmp_path):
    ckpt = tmp_path / "c.npz"
    x = data()
    kw = {"batch_size": 32, "lr_schedule": None, "progress": False, "checkpoint_path": ckpt}
    model().fit(x, epochs=1, **kw)
    arrays, config, _ = load_checkpoint(ckpt)
    config["training"]["world_size"] = 2
    save_checkpoint(ckpt, arrays, config, kind=CHECKPOINT_KIND)
    with pytest.warns(UserWarning, match="trained on 2 MPI process.*with 1"):
        model().fit(x, epochs=2, **kw, resume=True, comm=comm_self)


def test_no_mpi_import_unless_used(tmp_path):
    """Neither importing npvae, nor fit, nor `npvae train` imports mpi4py without a
    communicator or a launcher (in a fresh interpreter: this one may have imported it)."""
    code = (
        "import os, sys\n"
        "import numpy as np\n"
        "from npvae import VAE\n"
        "from npvae.cli import main\n"
        "x = (np.random.default_rng(0).random((40, 16)) < 0.5).astype('float32')\n"
        "VAE(latent_dim=2, hidden=(8,)).fit(x, epochs=1, batch_size=16, progress=False)\n"
        "np.save('x.npy', x)\n"
        "assert main(['train', '--data', 'x.npy', '--epochs', '1', '--hidden', '8', "
        "'--no-figures', '--quiet', '--out', 'run']) == 0\n"
        "print('mpi4py' in sys.modules)\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "NPVAE_MPI")}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                         *filter(None, [env.get("PYTHONPATH")])])
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_only_train_runs_under_a_launcher(monkeypatch, capsys, tmp_path):
    from npvae.cli import main

    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setenv("PMI_RANK", "0")
    assert main(["info", str(tmp_path)]) == 2
    assert "only `npvae train` runs on several MPI processes" in capsys.readouterr().err
    monkeypatch.setenv("PMI_RANK", "1")  # the other ranks keep quiet
    assert main(["info", str(tmp_path)]) == 2
    assert capsys.readouterr().err == ""
