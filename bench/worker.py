"""One benchmark case per process: the coordinator (run.py) talks to each over a pipe.

Every library runs in a process of its own. In one shared process their thread pools
fought: PyTorch's OpenMP threads, Numba's, OpenBLAS's and XLA's each spin for a while after
their work, and on 2 cores a spinning idle pool takes a core from whoever runs next (torch
eager trained at half its stand-alone speed inside the old single-process harness). Here a
worker that is not being timed sits blocked on its pipe, its threads asleep, and the
coordinator pauses before each window so that the last worker's threads have gone idle.

``Worker(key, weights, threads)`` starts the process (``spawn``: a fresh interpreter, so no
thread pool is inherited) and builds the case named ``key``: ``npvae``, ``npvae-1thread``
(npvae started with ``threads=1``), ``npvae-npdot``
(its environment sets ``NPVAE_GEMM=numpy``), ``numpy-ref``,
``torch-eager``, ``torch-fused``, ``torch-compile`` or ``jax-jit``.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

POOL = 8  # distinct batches cycled through, so no peer memorises a single batch


class NpvaePeer:
    """npvae behind the peers' interface (see bench/peers/__init__.py)."""

    def __init__(self, weights, backend, lr=1e-3):
        from npvae import VAE, Adam

        self.name, self.variant = "npvae", backend
        self.model = VAE(784, 20, hidden=(400,), backend=backend, dtype="float32")
        self.opt = Adam(self.model.params, lr=lr, backend=backend)
        self.notes = []
        self.reset(weights)

    def reset(self, weights):
        self.model.params.load(weights)
        self.opt = type(self.opt)(self.model.params, lr=self.opt.lr, backend=self.variant)

    def prep(self, x, noise=None):
        return x if noise is None else (x, noise)

    def loss(self, x, noise):
        return self.model.loss_and_grad(x, noise=noise)[0]

    def train_step(self, x, noise):
        self.model.train_step(x, self.opt, noise=noise, check_input=False)

    def infer(self, x):
        return self.model.reconstruct_mean(x, check_input=False)

    def sync(self):
        pass


def build(key, weights, threads):
    """The peer object for case ``key`` (imports only what that case needs)."""
    if key in ("npvae", "npvae-1thread", "npvae-npdot", "numpy-ref"):
        import numba

        peer = NpvaePeer(weights, "numpy" if key == "numpy-ref" else "numba")
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        return peer
    if key.startswith("torch-"):
        from bench.peers import torch_vae

        variant = {"torch-eager": "eager", "torch-fused": "eager_fused",
                   "torch-compile": "compile"}[key]
        return torch_vae.make(weights, threads=threads, variant=variant)
    if key == "jax-jit":
        from bench.peers import jax_vae

        return jax_vae.make(weights, threads=threads)
    raise ValueError(f"unknown case {key!r}")


def step_allocations(peer, x, noise, steps=20):
    """Bytes that NumPy allocates and keeps per steady-state training step (tracemalloc's
    NumPy domain), averaged over ``steps`` steps."""
    import tracemalloc

    import numpy as np

    for _ in range(3):
        peer.train_step(x, noise)
    domain = np.lib.tracemalloc_domain
    tracemalloc.start()
    snap0 = tracemalloc.take_snapshot()
    for _ in range(steps):
        peer.train_step(x, noise)
    snap1 = tracemalloc.take_snapshot()
    tracemalloc.stop()
    numpy_filter = [tracemalloc.DomainFilter(True, domain)]
    diff = snap1.filter_traces(numpy_filter).compare_to(snap0.filter_traces(numpy_filter),
                                                        "filename")
    grown = sum(d.size_diff for d in diff if d.size_diff > 0)
    blocks = sum(d.count_diff for d in diff if d.count_diff > 0)
    return {"numpy_bytes_retained_per_step": grown / steps,
            "numpy_blocks_retained_per_step": blocks / steps}


def peak_rss_mb():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Case:
    """The batches and the timed callables of one batch size, inside a worker."""

    def __init__(self, peer, weights, data):
        self.peer, self.weights = peer, weights
        peer.reset(weights)
        self.batches = [peer.prep(x, noise) for x, noise in data]
        self.i = 0

    def train(self):
        xt, nt = self.batches[self.i % len(self.batches)]
        self.i += 1
        self.peer.train_step(xt, nt)

    def infer(self):
        self.peer.infer(self.batches[0][0])


def serve(conn, key, weights, threads):
    """The worker's loop: build the case, then answer commands until ``stop``."""
    sys.path.insert(0, str(ROOT))
    from bench import common

    common.pin_cpus(threads)
    from threadpoolctl import threadpool_limits

    try:
        threadpool_limits(threads)
        peer = build(key, weights, threads)
        conn.send(("ok", list(getattr(peer, "notes", []))))
    except Exception as e:  # reported by the coordinator as a note, not fatal
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    case = None
    while True:
        cmd, args = conn.recv()
        try:
            if cmd == "stop":
                conn.send(("ok", None))
                return
            if cmd == "loss":
                x, noise = args
                peer.reset(weights)
                out = float(peer.loss(*peer.prep(x, noise)))
            elif cmd == "batch":
                case = _Case(peer, weights, args[0])
                out = None
            elif cmd == "warm":
                kind, calls, secs = args
                fn = case.train if kind == "train" else case.infer
                for _ in range(calls):
                    fn()
                common._one_window(fn, secs, peer.sync)
                out = None
            elif cmd == "window":
                kind, min_s = args
                if kind == "train":
                    peer.reset(weights)  # every window starts from the same weights
                out = common._one_window(case.train if kind == "train" else case.infer,
                                         min_s, peer.sync)
            elif cmd == "alloc":
                x, noise = args
                out = step_allocations(peer, *peer.prep(x, noise))
            elif cmd == "rss":
                out = peak_rss_mb()
            else:
                raise ValueError(f"unknown command {cmd!r}")
            conn.send(("ok", out))
        except Exception:
            conn.send(("error", traceback.format_exc()))


@contextlib.contextmanager
def _environ(changes):
    """Set (value) or remove (None) environment variables for the duration of the block."""
    def apply(values):
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    saved = {k: os.environ.get(k) for k in changes}
    try:
        apply(changes)
        yield
    finally:
        apply(saved)


class Worker:
    """A case running in its own process; :meth:`call` sends one command and waits."""

    def __init__(self, key, weights, threads, env=None):
        ctx = mp.get_context("spawn")
        self.key = key
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=serve, args=(child, key, weights, threads), daemon=True)
        with _environ(env or {}):  # the child starts with os.environ as it is now
            self.proc.start()
        status, self.notes = self.conn.recv()
        if status != "ok":
            self.proc.join(5)
            raise RuntimeError(self.notes)

    def call(self, cmd, *args):
        self.conn.send((cmd, args))
        status, out = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"{self.key}: {cmd} failed:\n{out}")
        return out

    def case(self, kind, n):
        """A case dict for :func:`bench.common.time_interleaved` that times ``kind``
        (``"train"`` or ``"infer"``) in this worker."""
        return {"items": n,
                "warm": lambda calls, secs: self.call("warm", kind, calls, secs),
                "window": lambda min_s: self.call("window", kind, min_s)}

    def close(self):
        try:
            self.call("stop")
        except (OSError, EOFError, RuntimeError):
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
