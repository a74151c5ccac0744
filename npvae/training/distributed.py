r"""Data-parallel training over MPI (mpi4py): ``VAE.fit(..., comm=MPI.COMM_WORLD)``.

Every rank holds the whole model and the whole data set. Each global batch (the user's
``batch_size``) is cut into one contiguous shard per rank, the shards differing by at most
one row; each rank computes the gradient of its shard's mean loss, weights it by
:math:`n_r / N` and the ranks sum the flat gradient buffer with one in-place ``Allreduce``:

.. math::
    \sum_r \frac{n_r}{N} \nabla \Bigl(\frac{1}{n_r} \sum_{i \in r} \ell_i\Bigr)
    = \nabla \Bigl(\frac1N \sum_{i=1}^N \ell_i\Bigr),

the gradient of the global batch mean. Every rank then applies the same Adam step to the
same parameters, so the ranks stay bit-identical without exchanging parameters (checked by a
checksum every ``check_every`` steps and at every epoch's end; a drift raises
:class:`RanksDiverged` on all ranks).

Reproducibility. All ranks draw the same shuffles, binarisations and corruptions and the
reparameterisation noise of the *whole* global batch, and each uses its shard's rows of it
(a few thousand normals a step). So the run is the one a single process would make with the
same batch size, up to the order in which the gradient is summed: bit-for-bit reproducible
for a given number of ranks P, and equal across P to float rounding (validation too). One
exception: free bits are decided on each shard's own batch-mean KL, not the global batch's.

Coordination. Rank 0 alone writes checkpoints and shows the progress bar. Each step's
loss, recon and KL are summed with the gradient (a small ``Iallreduce``), so every rank sees
the global loss and a NaN on any rank stops all of them at the same step. Ctrl-C or
SIGTERM on any rank is carried in the same reduction, so all ranks stop after the same step
and rank 0 writes the checkpoint. An exception that only some ranks raise would leave the
others waiting forever in the next reduction, so it calls ``comm.Abort`` instead.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import warnings
from contextlib import contextmanager

import numpy as np

from npvae.core import checks as chk

__all__ = ["DataParallel", "RanksDiverged", "CHECK_EVERY", "shard_bounds", "launched_world",
           "world_comm", "resize_note"]

CHECK_EVERY = 100  # steps between parameter checksums (one ~0.3 ms sum over the parameters)
# (size, rank) variables that MPI launchers set: MPICH/Intel MPI (and srun --mpi=pmi2),
# Open MPI, MVAPICH
_LAUNCHERS = (("PMI_SIZE", "PMI_RANK"), ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"),
              ("MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_RANK"))
_SIGNALS = (signal.SIGINT,) + ((signal.SIGTERM,) if hasattr(signal, "SIGTERM") else ())


class RanksDiverged(RuntimeError):
    """The ranks' parameters are no longer bit-identical (raised on every rank)."""


def shard_bounds(n, size, rank):
    """``(start, stop)`` of rank ``rank``'s rows of a batch of ``n`` rows cut into ``size``
    contiguous shards whose sizes differ by at most one (the first ``n % size`` get one more)."""
    q, r = divmod(int(n), int(size))
    start = rank * q + min(rank, r)
    return start, start + q + (rank < r)


def launched_world(environ=None):
    """``(size, rank, variable)`` that an MPI launcher put in the environment, or None.

    ``NPVAE_MPI=0`` ignores the launcher; ``NPVAE_MPI=1`` asks for MPI even when no known
    variable is set (then size and rank are None: mpi4py will tell).
    """
    env = os.environ if environ is None else environ
    flag = env.get("NPVAE_MPI", "auto").strip().lower()
    if flag in ("0", "off", "no", "false"):
        return None
    for size, rank in _LAUNCHERS:
        try:
            found = int(env[size]), int(env.get(rank, 0))
        except (KeyError, ValueError):
            continue
        return (*found, size)
    return (None, None, "NPVAE_MPI") if flag in ("1", "on", "yes", "true") else None


def world_comm(environ=None):
    """``MPI.COMM_WORLD`` when a launcher started this process as one of several (see
    :func:`launched_world`), else None. mpi4py is imported only then."""
    world = launched_world(environ)
    if world is None or world[0] == 1:
        return None
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(
            f"this process was started by an MPI launcher ({world[2]}={world[0]}) but mpi4py "
            "is not installed: pip install 'npvae[mpi]' (or run without mpiexec, or set "
            "NPVAE_MPI=0)") from exc
    return MPI.COMM_WORLD if MPI.COMM_WORLD.Get_size() > 1 else None


def resize_note(old, new):
    """The warning for resuming a checkpoint written by ``old`` ranks with ``new`` ranks."""
    if old == new:
        return None
    return (f"resuming a run trained on {old} MPI process(es) with {new}: the global batch, "
            "the shuffles and the noise are unchanged, so training continues the same run, "
            f"but it equals an uninterrupted {old}-process run only up to float rounding "
            "(the gradient is summed in another order)")


def _checksum(a):
    """Sum of the values' bit patterns as unsigned integers: changing any one value changes
    it (exactly, without wrap-around for fewer than 2**32 float32 values)."""
    a = np.ascontiguousarray(a).reshape(-1)
    return int(a.view(f"u{a.itemsize}").sum(dtype=np.uint64))


def _digest(a):
    """Order-sensitive fingerprint of an array (None for None), to compare ranks' data."""
    import hashlib  # here: it loads OpenSSL, 2-3 ms of every import of npvae

    if a is None:
        return None
    a = np.ascontiguousarray(a)
    return f"{a.dtype}{a.shape}:{hashlib.blake2b(a.view(np.uint8)).hexdigest()[:32]}"


def _all_ranks(exc):
    """Mark ``exc`` as raised on every rank at the same point (no abort needed)."""
    exc.npvae_all_ranks = True
    return exc


class DataParallel:
    """Data-parallel training over an mpi4py communicator; pass it (or the communicator
    itself) as ``VAE.fit(..., comm=...)``.

    Parameters
    ----------
    comm : mpi4py.MPI.Intracomm
        Usually ``MPI.COMM_WORLD``. Every rank of it must call ``fit`` with the same data,
        model and settings (checked at the start).
    check_every : int, default 100
        Compare the ranks' parameter checksums every this many steps (and at every epoch's
        end); a difference raises :class:`RanksDiverged` on every rank.
    """

    def __init__(self, comm, *, check_every=CHECK_EVERY):
        needed = ("Allreduce", "Iallreduce", "Bcast", "allgather", "bcast", "Abort",
                  "Get_rank", "Get_size")
        if not all(hasattr(comm, a) for a in needed):
            raise TypeError("comm must be an mpi4py communicator such as MPI.COMM_WORLD, got "
                            f"{type(comm).__name__}")
        from mpi4py import MPI

        self._MPI = MPI
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.check_every = chk.positive_int(check_every, "check_every")
        self.pending = set()  # signals this rank received, not yet agreed
        self.stop_agreed = False  # what the ranks agreed at the last reduction
        self._sums = np.zeros(6)  # loss, recon, kl (weighted), then SIGINT, SIGTERM, stop

    @property
    def is_root(self):
        return self.rank == 0

    def shard(self, n):
        """This rank's rows of a global batch of ``n`` rows, as a slice."""
        return slice(*shard_bounds(n, self.size, self.rank))

    def default_threads(self):
        """Threads per rank: the CPUs this process may use over the ranks on its node."""
        node = self.comm.Split_type(self._MPI.COMM_TYPE_SHARED)
        try:
            ranks = node.Get_size()
        finally:
            node.Free()
        cpus = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                else os.cpu_count() or 1)
        return max(1, cpus // ranks)

    # ------------------------------------------------------------------- collectives
    def from_root(self, fn):
        """``fn()`` on rank 0; its result (or its exception, raised) on every rank."""
        out = None
        if self.is_root:
            try:
                out = fn()
            except Exception as exc:
                out = exc
        out = self.comm.bcast(out, root=0)
        if isinstance(out, BaseException):
            raise _all_ranks(out)
        return out

    def setup(self, trainer, X, y, val):
        """Check that every rank trains the same model on the same data with the same
        settings, then give every rank rank 0's parameters."""
        from npvae import __version__

        m = trainer.model
        mine = {"npvae": __version__, "backend": m.backend, "model": m.config(),
                "settings": trainer._settings(), "X": _digest(X), "y": _digest(y),
                "X_val": _digest(None if val is None else val[0]),
                "y_val": _digest(None if val is None else val[1])}
        everyone = self.comm.allgather(mine)
        keys = sorted({k for other in everyone for k in mine if other[k] != everyone[0][k]})
        if keys:
            ranks = [r for r, other in enumerate(everyone) if other != everyone[0]]
            raise _all_ranks(ValueError(
                f"the MPI ranks disagree on {', '.join(keys)} (ranks {ranks} differ from rank "
                "0): every rank must call fit with the same data, model and settings"))
        self.comm.Bcast(m.params.data, root=0)

    def resume(self, path, read, restore):
        """Rank 0 reads the checkpoint (``read()``: ``(arrays, config)`` or None when there
        is none) and sends it to every rank, which applies it with ``restore(arrays, config,
        path)``; warnings only on rank 0. Returns whether there was a checkpoint."""
        got = self.from_root(read)
        if got is None:
            return False
        with warnings.catch_warnings():
            if not self.is_root:
                warnings.simplefilter("ignore")
            try:
                restore(*got, path)
            except Exception as exc:  # same input on every rank: the same error on every rank
                raise _all_ranks(exc) from None
        return True

    # -------------------------------------------------------------------------- steps
    def train_step(self, trainer, xb, yb, n_global, **loss_kw):
        """One step on this rank's shard ``xb`` (rows :func:`shard_bounds` of the global
        batch of ``n_global`` rows): gradient, reduction, update; returns the global
        ``(loss, parts)``. Draws the global batch's noise from ``trainer.rng_noise``."""
        m, opt = trainer.model, trainer.opt
        rows = self.shard(n_global)
        noise = trainer.rng_noise.standard_normal((m.n_samples, n_global, m.latent_dim),
                                                  dtype=m.dtype)
        reduce = self._reducer(trainer, len(xb) / n_global)
        if len(xb):
            out = m.train_step(xb, opt, yb, reduce=reduce, noise=noise[:, rows], **loss_kw)
        else:  # a batch of fewer rows than ranks: this rank adds zeros to the sum
            m.params.grad.fill(0)
            out = reduce(0.0, {"loss": 0.0, "recon": 0.0, "kl": 0.0})
            if not np.isfinite(out[0]):
                raise FloatingPointError(f"the loss is {out[0]}; no update was made")
            opt.step()
        if (trainer.step + 1) % self.check_every == 0:
            self.check_in_sync(trainer, f"step {trainer.step + 1}")
        return out

    def _reducer(self, trainer, weight):
        """``reduce(loss, parts)`` for ``VAEModel.train_step``: weights this rank's gradient
        by ``n_r / N``, sums it over the ranks in place, and the loss parts and stop
        requests with it."""
        MPI, comm, grad, sums = self._MPI, self.comm, trainer.model.params.grad, self._sums

        def reduce(loss, parts):
            if weight != 1.0:
                np.multiply(grad, grad.dtype.type(weight), out=grad)
            sums[:3] = loss * weight, parts["recon"] * weight, parts["kl"] * weight
            sums[3:] = self._requests(trainer)
            req = comm.Iallreduce(MPI.IN_PLACE, sums, op=MPI.SUM)
            comm.Allreduce(MPI.IN_PLACE, grad, op=MPI.SUM)
            req.Wait()
            self._agree(trainer, sums[3:])
            loss = float(sums[0])
            return loss, {**parts, "loss": loss, "recon": float(sums[1]),
                          "kl": float(sums[2])}
        return reduce

    def _requests(self, trainer):
        return (float(signal.SIGINT in self.pending),
                float(len(_SIGNALS) > 1 and _SIGNALS[1] in self.pending),
                float(bool(trainer.stop_training)))

    def _agree(self, trainer, flags):
        """Apply the summed stop requests: the same on every rank (SIGTERM wins)."""
        sig = (_SIGNALS[1] if flags[1] > 0 else signal.SIGINT if flags[0] > 0 else None)
        if sig is not None:
            trainer._signal = sig
        if flags[2] > 0:
            trainer.stop_training = True
        self.stop_agreed = sig is not None or flags[2] > 0

    def check_in_sync(self, trainer, when, agree=False):
        """Compare the ranks' parameter checksums (raising :class:`RanksDiverged` on every
        rank if they differ); with ``agree``, also agree on the stop requests."""
        mine = (_checksum(trainer.model.params.data), *self._requests(trainer))
        everyone = self.comm.allgather(mine)
        sums = [e[0] for e in everyone]
        if len(set(sums)) > 1:
            bad = [r for r, s in enumerate(sums) if s != sums[0]]
            raise _all_ranks(RanksDiverged(
                f"MPI ranks {bad} drifted from rank 0 by {when}: their parameters are no "
                f"longer bit-identical (checksums {sums}). The ranks must run the same npvae, "
                "NumPy, Numba and BLAS builds with the same threads and CPU features; and "
                "nothing may change one rank's model during fit. No checkpoint was written"))
        if agree:
            self._agree(trainer, np.sum([e[1:] for e in everyone], axis=0))

    def validation(self, model, val, seed):
        """``(recon, kl, loss)`` means over the validation set ``val = (X, y)``.

        The set is cut into the chunks that :func:`~npvae.inference.metrics.elbo_terms`
        draws its noise for (1024 rows each), each rank takes a contiguous run of whole
        chunks and first draws (and drops) the noise of the chunks before its own, so every
        row sees the noise a single process gives it from ``seed``, whatever P."""
        from npvae.inference import metrics

        xv, yv = val
        n, size = xv.shape[0], metrics._ROWS
        first, stop = shard_bounds(-(-n // size), self.size, self.rank)
        rows = slice(first * size, min(stop * size, n))
        rng = np.random.default_rng(seed)
        for _ in range(first):
            rng.standard_normal((model.n_samples, size, model.latent_dim))
        sums = np.zeros(3)
        if rows.stop > rows.start:
            recon, kl = metrics.elbo_terms(model, xv[rows], None if yv is None else yv[rows],
                                           n_samples=model.n_samples, rng=rng)
            sums[:] = recon.sum(), kl.sum(), (recon + model.beta * kl).sum()
        self.comm.Allreduce(self._MPI.IN_PLACE, sums, op=self._MPI.SUM)
        return tuple(float(s) for s in sums / n)

    # -------------------------------------------------------------------- the guard
    @contextmanager
    def guard(self, signals=False, agreed=()):
        """Around collective work: an exception raised on this rank alone aborts every rank
        (``comm.Abort``) instead of leaving the others waiting; those of the types in
        ``agreed``, which every rank raises at the same step, and those marked by this
        module, propagate. With ``signals``, SIGINT and SIGTERM become stop requests that
        the ranks agree on at the next reduction; a second Ctrl-C raises
        KeyboardInterrupt, which aborts."""
        installed = {}
        if signals and threading.current_thread() is threading.main_thread():
            def handler(signum, frame):
                if signum == signal.SIGINT and signum in self.pending:
                    raise KeyboardInterrupt
                self.pending.add(signum)
            installed = {s: signal.signal(s, handler) for s in _SIGNALS}
        try:
            yield self
        except BaseException as exc:
            if (self.size > 1 and not isinstance(exc, agreed)
                    and not getattr(exc, "npvae_all_ranks", False)):
                self.abort(exc)
            raise
        finally:
            for s, h in installed.items():
                signal.signal(s, h if h is not None else signal.SIG_DFL)
            if signals:
                self.pending.clear()
                self.stop_agreed = False

    def abort(self, exc):
        """Print ``exc`` with this rank's number, then end every rank (``comm.Abort``)."""
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        code = 130 if isinstance(exc, KeyboardInterrupt) else 1
        print(f"npvae: MPI rank {self.rank} of {self.size} stopped with "
              f"{type(exc).__name__}: {exc}; aborting all ranks (MPI_Abort) so that none "
              "waits forever", file=sys.stderr, flush=True)
        # MPI_Abort kills the launcher's I/O forwarding with the ranks: under load the
        # message above was lost in flight; a moment lets it reach the user's terminal
        time.sleep(0.5)
        self.comm.Abort(code)
