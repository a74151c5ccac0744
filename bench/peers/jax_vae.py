"""JAX peer: the same VAE as a ``jax.jit``-ed training step with a hand-written Adam.

Variants (``make(..., variant=...)``):

``jit``        one ``jax.jit`` of (loss, grad, Adam) with the parameters and the Adam state
               donated (``donate_argnums``); ``train_step`` returns without waiting (JAX's
               asynchronous dispatch, as in a user's loop that does not read the loss each
               step); ``peer.sync()`` waits for it.  Time windows must call ``sync`` at
               their end (``bench.common.time_windows(..., sync=peer.sync)``).
``jit_block``  same, but ``train_step`` blocks on its outputs each step.

Adam is PyTorch's form: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).  (optax is not used: not installed,
and its Adam puts eps differently: sqrt(v_hat) + eps, which is the same thing, but the
hand-written form keeps the dependency list to jax/jaxlib.)

Threads -- what works with jaxlib 0.10.2 on this CPU (measured):

* No XLA flag sets the intra-op thread count.  ``--xla_cpu_multi_thread_eigen=false`` is
  accepted but changed nothing measurable; ``--intra_op_parallelism_threads=N`` is a
  TensorFlow session option, not an XLA flag: XLA aborts the process at start-up
  ("Unknown flag in XLA_FLAGS"), and without its leading ``--`` it is silently ignored.
* What works is the CPU affinity mask: XLA sizes its pool from, and its threads inherit,
  the affinity of the thread that initialises the backend.  ``os.sched_setaffinity(0, ...)``
  affects only the calling thread and the threads it creates later, so it must run before
  jax is imported/initialised (best: at the very top of the process, before numpy too).
  A 2048^2 float32 matmul ran at ~205 GFLOP/s unpinned (2 cores) and ~100 GFLOP/s when the
  process was pinned to one core before importing jax; pinning after initialisation did not
  bring it down to one core.

So ``configure_threads(n)`` pins the process to its first n allowed CPUs if jax is not yet
imported, and ``make(threads=n)`` raises if jax was initialised with a different number of
allowed CPUs (pass ``threads=None`` to skip the check).  Thread counts therefore need one
process each.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
import time

import numpy as np

from . import LATENT, WEIGHT_SHAPES, check_weights

VARIANTS = ("jit", "jit_block")

_jax = None
_err = None
_cpus_at_init = None


def configure_threads(threads):
    """Pin this process to its first ``threads`` allowed CPUs, before jax is imported.

    Returns a note.  Does nothing (and says so) if jax is already imported.
    """
    if "jax" in sys.modules:
        n = _cpus_at_init or len(os.sched_getaffinity(0))
        return f"jax already imported with {n} CPUs; not re-pinned"
    cpus = sorted(os.sched_getaffinity(0))
    if threads is not None and threads < len(cpus):
        os.sched_setaffinity(0, set(cpus[:threads]))
        return f"pinned process to CPUs {cpus[:threads]} before importing jax"
    return f"process allowed CPUs {cpus}; no pinning needed"


def _import():
    global _jax, _err, _cpus_at_init
    if _jax is None and _err is None:
        try:
            import jax  # noqa: F401
            import jax.numpy  # noqa: F401

            jax.config.update("jax_platforms", "cpu")
            _cpus_at_init = len(os.sched_getaffinity(0))
            jax.devices()  # initialise the backend now, under the current affinity
            _jax = jax
        except Exception as e:  # pragma: no cover - depends on the machine
            _err = f"{type(e).__name__}: {e}"
    return _jax


def available() -> bool:
    return _import() is not None


def why_unavailable():
    _import()
    return _err


def version():
    try:
        return importlib.metadata.version("jax")
    except importlib.metadata.PackageNotFoundError:
        return None


def _forward_parts(p, x, noise):
    jnp = _jax.numpy
    h = jnp.maximum(x @ p["encoder.0.W"] + p["encoder.0.b"], 0.0)
    out = h @ p["encoder.out.W"] + p["encoder.out.b"]
    mu, logvar = out[:, :LATENT], out[:, LATENT:]
    z = mu + jnp.exp(0.5 * logvar) * noise  # (L, N, 20)
    hd = jnp.maximum(z @ p["decoder.0.W"] + p["decoder.0.b"], 0.0)
    logits = hd @ p["decoder.out.W"] + p["decoder.out.b"]  # (L, N, 784)
    return mu, logvar, logits


def _loss(p, x, noise):
    jnp = _jax.numpy
    n = x.shape[0]
    nl = noise.shape[0]
    mu, logvar, logits = _forward_parts(p, x, noise)
    # BCE with logits, stable: max(l,0) - l*x + log1p(exp(-|l|))
    bce = jnp.maximum(logits, 0.0) - logits * x + jnp.log1p(jnp.exp(-jnp.abs(logits)))
    rec = jnp.sum(bce) / (nl * n)
    kl = 0.5 * jnp.sum(mu * mu + jnp.exp(logvar) - 1.0 - logvar) / n
    return rec + kl


def _infer(p, x):
    jnp = _jax.numpy
    h = jnp.maximum(x @ p["encoder.0.W"] + p["encoder.0.b"], 0.0)
    mu = (h @ p["encoder.out.W"] + p["encoder.out.b"])[:, :LATENT]
    hd = jnp.maximum(mu @ p["decoder.0.W"] + p["decoder.0.b"], 0.0)
    return _jax.nn.sigmoid(hd @ p["decoder.out.W"] + p["decoder.out.b"])


def _make_step(lr, b1, b2, eps):
    jax = _jax
    jnp = jax.numpy

    def step(p, state, x, noise):
        loss, g = jax.value_and_grad(_loss)(p, x, noise)
        t = state["t"] + 1.0
        bc1 = 1.0 - b1 ** t
        bc2 = 1.0 - b2 ** t
        step_size = lr / bc1
        bc2_sqrt = jnp.sqrt(bc2)
        m = jax.tree_util.tree_map(lambda m_, g_: b1 * m_ + (1.0 - b1) * g_, state["m"], g)
        v = jax.tree_util.tree_map(lambda v_, g_: b2 * v_ + (1.0 - b2) * g_ * g_, state["v"], g)
        p = jax.tree_util.tree_map(
            lambda p_, m_, v_: p_ - step_size * m_ / (jnp.sqrt(v_) / bc2_sqrt + eps), p, m, v
        )
        return p, {"t": t, "m": m, "v": v}, loss

    return jax.jit(step, donate_argnums=(0, 1))


class JaxVAE:
    name = "jax"

    def __init__(self, weights, lr=1e-3, threads=2, variant="jit"):
        if variant not in VARIANTS:
            raise ValueError(f"unknown jax variant {variant!r}; choose from {VARIANTS}")
        check_weights(weights)
        self.notes = []
        if "jax" not in sys.modules:
            self.notes.append(configure_threads(threads))
        jax = _import()
        if jax is None:
            raise RuntimeError(f"jax unavailable: {_err}")
        if threads is not None and threads != _cpus_at_init:
            raise RuntimeError(
                f"jax was initialised with {_cpus_at_init} allowed CPUs but threads={threads} "
                "was asked: XLA's CPU thread count follows the CPU affinity at initialisation; "
                "run each thread count in its own process and call "
                "bench.peers.jax_vae.configure_threads(n) (or pin the process) before jax is "
                "imported, or pass threads=None"
            )
        jnp = jax.numpy
        self.variant = variant
        self.threads = threads
        self.notes.append(f"jax {jax.__version__}, XLA CPU, {_cpus_at_init} allowed CPUs at "
                          f"init; XLA_FLAGS={os.environ.get('XLA_FLAGS')!r}")
        self.params = {k: jnp.asarray(np.asarray(weights[k], dtype=np.float32))
                       for k in WEIGHT_SHAPES}
        self.state = {
            "t": jnp.zeros((), jnp.float32),
            "m": {k: jnp.zeros(s, jnp.float32) for k, s in WEIGHT_SHAPES.items()},
            "v": {k: jnp.zeros(s, jnp.float32) for k, s in WEIGHT_SHAPES.items()},
        }
        self._step = _make_step(float(lr), 0.9, 0.999, 1e-8)
        self._loss = jax.jit(_loss)
        self._infer = jax.jit(_infer)
        self._last = None
        self._last_infer = None
        self.compile_s = 0.0  # seconds spent in first calls per shape (jit compile + 1 run)
        self._compiled_shapes = set()
        self.notes.append("hand-written Adam (PyTorch form), jit with donate_argnums=(0, 1)"
                          + ("; train_step blocks each step" if variant == "jit_block"
                             else "; asynchronous dispatch, sync() at window end"))

    def _a(self, a):
        if isinstance(a, _jax.Array):
            return a
        return _jax.numpy.asarray(np.asarray(a, dtype=np.float32))

    def prep(self, x, noise=None):
        xa = self._a(x)
        if noise is None:
            return xa
        if getattr(noise, "ndim", 3) == 2:
            noise = noise[None]
        return xa, self._a(noise)

    def loss(self, x, noise) -> float:
        x, noise = self.prep(x, noise)
        return float(self._loss(self.params, x, noise))

    def train_step(self, x, noise) -> None:
        x, noise = self._a(x), self._a(noise)
        key = ("step", x.shape, noise.shape)
        first = key not in self._compiled_shapes
        if first:
            t0 = time.perf_counter()
        self.params, self.state, loss = self._step(self.params, self.state, x, noise)
        self._last = loss
        if self.variant == "jit_block" or first:
            _jax.block_until_ready((self.params, self.state))
        if first:
            self.compile_s += time.perf_counter() - t0
            self._compiled_shapes.add(key)

    def infer(self, x):
        x = self._a(x)
        key = ("infer", x.shape)
        first = key not in self._compiled_shapes
        if first:
            t0 = time.perf_counter()
        out = self._infer(self.params, x)
        self._last_infer = out
        if first:
            out.block_until_ready()
            self.compile_s += time.perf_counter() - t0
            self._compiled_shapes.add(key)
        return out

    def warmup(self, x, noise, steps=3):
        for _ in range(steps):
            self.train_step(x, noise)
            self.infer(x).block_until_ready()
        self.sync()

    def sync(self) -> None:
        _jax.block_until_ready((self.params, self.state, self._last, self._last_infer))

    def reset(self, weights) -> None:
        """Load ``weights`` (npvae layout) and zero Adam's state (same shapes: no recompile)."""
        jnp = _jax.numpy
        check_weights(weights)
        self.sync()
        self.params = {k: jnp.asarray(np.asarray(weights[k], dtype=np.float32))
                       for k in WEIGHT_SHAPES}
        self.state = {
            "t": jnp.zeros((), jnp.float32),
            "m": {k: jnp.zeros(s, jnp.float32) for k, s in WEIGHT_SHAPES.items()},
            "v": {k: jnp.zeros(s, jnp.float32) for k, s in WEIGHT_SHAPES.items()},
        }

    def denormal_fraction(self) -> float:
        """Fraction of Adam's m and v entries that are float32 denormals (XLA on CPU flushes
        denormals to zero, so this is expected to be 0)."""
        self.sync()
        tiny = np.finfo(np.float32).tiny
        tot = den = 0
        for k in ("m", "v"):
            for a in self.state[k].values():
                a = np.asarray(a)
                tot += a.size
                den += int(np.count_nonzero((a != 0) & (np.abs(a) < tiny)))
        return den / tot

    def get_weights(self) -> dict:
        self.sync()
        return {k: np.array(v, dtype=np.float32) for k, v in self.params.items()}


def make(weights, lr=1e-3, threads=2, variant="jit"):
    """Build a JAX peer; see the module docstring (threads need one process each)."""
    return JaxVAE(weights, lr=lr, threads=threads, variant=variant)
