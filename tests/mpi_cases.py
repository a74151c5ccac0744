"""The programs that tests/test_mpi.py runs under ``mpiexec -n 2``: ``python mpi_cases.py
CASE OUTDIR``. Rank 0 writes the results to OUTDIR; every rank prints what it saw."""

import json
import os
import sys

import numpy as np
from mpi4py import MPI

from npvae.training.distributed import DataParallel, RanksDiverged
from npvae.training.estimator import VAE
from npvae.training.trainer import Callback

comm = MPI.COMM_WORLD
N, BATCH = 259, 64  # 5 steps per epoch; the last batch of 3 rows splits 2 / 1


def data(n=N, d=16, seed=0):
    """Four binary prototypes with 5% of the pixels flipped."""
    rng = np.random.default_rng(seed)
    protos = (rng.random((4, d)) < 0.5).astype(np.float32)
    return np.abs(protos[rng.integers(0, 4, n)] - (rng.random((n, d)) < 0.05)).astype(np.float32)


def model():
    return VAE(latent_dim=3, hidden=(16,), seed=3)


FIT = {"batch_size": BATCH, "epochs": 2, "progress": False}


class OnStep(Callback):
    """Calls ``fn(trainer)`` on rank ``rank`` at step ``step``."""

    def __init__(self, rank, step, fn):
        self.rank, self.step, self.fn = rank, step, fn

    def on_step_end(self, trainer, step, parts):
        if comm.rank == self.rank and step == self.step:
            self.fn(trainer)


class LastStep(Callback):
    def __init__(self):
        self.step = 0

    def on_step_end(self, trainer, step, parts):
        self.step = step


def everyone(m):
    """Every rank's parameters, on rank 0 (None elsewhere)."""
    return comm.gather(m.params.data.copy(), root=0)


def train(out):
    """Adam and SGD runs, and a run stopped by a callback on rank 1 alone, then resumed."""
    x, v = data(), data(60, seed=1)
    results = {}
    for opt in ("adam", "sgd"):
        m = model().fit(x, validation_data=(v,), optimizer=opt, **FIT,
                        comm=DataParallel(comm, check_every=1))
        results[opt] = (everyone(m), m.history_)
    ckpt = os.path.join(out, "stopped.npz")
    m, last = model(), LastStep()
    stop = OnStep(1, 3, lambda t: setattr(t, "stop_training", True))
    m.fit(x, validation_data=(v,), **FIT, comm=comm, checkpoint_path=ckpt,
          callbacks=[stop, last])
    stopped = comm.gather((m.stop_reason_, last.step))
    m.fit(x, validation_data=(v,), **FIT, comm=comm, checkpoint_path=ckpt, resume=True)
    resumed = everyone(m)
    if comm.rank == 0:
        np.savez(os.path.join(out, "train.npz"), adam=np.array(results["adam"][0]),
                 sgd=np.array(results["sgd"][0]), resumed=np.array(resumed))
        with open(os.path.join(out, "train.json"), "w") as f:
            json.dump({"adam": results["adam"][1], "sgd": results["sgd"][1],
                       "stopped": stopped}, f)


def drift(out):
    """Rank 1 changes one weight after step 3; the check at step 4 must catch it."""
    def perturb(trainer):
        trainer.model.params.data[0] += 1e-3

    try:
        model().fit(data(), **FIT, comm=DataParallel(comm, check_every=2),
                    callbacks=[OnStep(1, 3, perturb)])
    except RanksDiverged as exc:
        print(f"rank {comm.rank}: RanksDiverged: {exc}", flush=True)


def raises(out):
    """Rank 1 fails at step 2 of a long run; rank 0 would wait for it forever."""
    def fail(trainer):
        raise RuntimeError("deliberate failure on rank 1")

    model().fit(data(), **{**FIT, "epochs": 10_000}, comm=comm, callbacks=[OnStep(1, 2, fail)])


def long(out):
    """A long run; each rank writes its pid once it has trained a step."""
    def mark(trainer):
        with open(os.path.join(out, f"pid.{comm.rank}"), "w") as f:
            f.write(str(os.getpid()))

    marks = [OnStep(r, 1, mark) for r in range(comm.size)]
    model().fit(data(), **{**FIT, "epochs": 10_000}, comm=comm, callbacks=marks)


if __name__ == "__main__":
    case, out = sys.argv[1], sys.argv[2]
    {"train": train, "drift": drift, "raises": raises, "long": long}[case](out)
    print(f"rank {comm.rank}: {case} done", flush=True)
