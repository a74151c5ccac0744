"""PyTorch CPU peer: the PyTorch-examples VAE, loadable from npvae's parameter layout.

Variants (``make(..., variant=...)``):

``eager``          nn.Linear model, ``torch.optim.Adam`` with default settings (on CPU
                   tensors the default is the single-tensor for-loop implementation:
                   ``foreach`` defaults on only for CUDA-like devices).
``eager_foreach``  same, ``Adam(foreach=True)`` (multi-tensor implementation).
``eager_fused``    same, ``Adam(fused=True)`` (fused CPU kernel, torch >= 2.4).
``compile``        ``torch.compile`` (mode default) of the whole training step function
                   (zero_grad, forward, backward, Adam(foreach default) step) and of the
                   inference function, ``dynamic=False``.  Compilation happens on the first
                   ``train_step``/``infer`` call for each input shape (a warm-up step changes
                   the weights, so ``make`` does not do it): call ``peer.warmup(x, noise)``
                   before timing (``bench.common.time_windows``' warm-up also covers it).
                   The seconds spent in those first calls accumulate in ``peer.compile_s``.

The mu and logvar heads are one ``Linear(400, 40)`` (npvae's ``encoder.out``) split into
columns [:20] and [20:]; the examples' two ``Linear(400, 20)`` heads compute exactly the same
thing (Adam is elementwise), with one GEMM fewer here.

Threads: ``make(threads=n)`` calls ``torch.set_num_threads(n)`` (process-wide) and, once per
process, ``torch.set_num_interop_threads(1)`` (only possible before any inter-op work).
"""

from __future__ import annotations

import importlib.metadata
import time

import numpy as np

from . import LATENT, check_weights

VARIANTS = ("eager", "eager_foreach", "eager_fused", "compile")

_torch = None
_err = None
_interop_set = None


def _import():
    global _torch, _err
    if _torch is None and _err is None:
        try:
            import torch  # noqa: F401

            _torch = torch
        except Exception as e:  # pragma: no cover - depends on the machine
            _err = f"{type(e).__name__}: {e}"
    return _torch


def available() -> bool:
    return _import() is not None


def why_unavailable():
    _import()
    return _err


def version():
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def set_threads(threads):
    """torch.set_num_threads(threads); torch.set_num_interop_threads(1) once. Returns notes."""
    global _interop_set
    torch = _import()
    notes = []
    if threads is not None:
        torch.set_num_threads(int(threads))
    if _interop_set is None:
        try:
            torch.set_num_interop_threads(1)
            _interop_set = True
        except RuntimeError as e:
            _interop_set = False
            notes.append(f"set_num_interop_threads(1) failed: {e}")
    notes.append(
        f"torch threads={torch.get_num_threads()} interop={torch.get_num_interop_threads()}"
    )
    return notes


def _build_model(weights):
    torch = _import()
    nn = torch.nn

    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc0 = nn.Linear(784, 400)
            self.enc_out = nn.Linear(400, 2 * LATENT)
            self.dec0 = nn.Linear(LATENT, 400)
            self.dec_out = nn.Linear(400, 784)

        def encode(self, x):
            out = self.enc_out(torch.relu(self.enc0(x)))
            return out[..., :LATENT], out[..., LATENT:]

        def decode_logits(self, z):
            return self.dec_out(torch.relu(self.dec0(z)))

    m = VAE()
    with torch.no_grad():
        for lin, key in (
            (m.enc0, "encoder.0"),
            (m.enc_out, "encoder.out"),
            (m.dec0, "decoder.0"),
            (m.dec_out, "decoder.out"),
        ):
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(weights[key + ".W"].T)))
            lin.bias.copy_(torch.from_numpy(np.ascontiguousarray(weights[key + ".b"])))
    return m.float()


def _loss_fn(model, x, noise):
    """-ELBO: BCE-with-logits summed over pixels (mean over L samples and the batch) + KL."""
    torch = _torch
    F = torch.nn.functional
    n = x.shape[0]
    mu, logvar = model.encode(x)
    std = torch.exp(0.5 * logvar)
    if noise.shape[0] == 1:
        z = mu + std * noise[0]
        logits = model.decode_logits(z)
        rec = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / n
    else:
        nl = noise.shape[0]
        z = mu + std * noise  # (L, N, 20)
        logits = model.decode_logits(z)
        rec = F.binary_cross_entropy_with_logits(
            logits, x.expand(nl, *x.shape), reduction="sum"
        ) / (nl * n)
    kl = 0.5 * torch.sum(mu * mu + torch.exp(logvar) - 1.0 - logvar) / n
    return rec + kl


class TorchVAE:
    name = "torch"

    def __init__(self, weights, lr=1e-3, threads=2, variant="eager"):
        torch = _import()
        if torch is None:
            raise RuntimeError(f"torch unavailable: {_err}")
        if variant not in VARIANTS:
            raise ValueError(f"unknown torch variant {variant!r}; choose from {VARIANTS}")
        check_weights(weights)
        self.variant = variant
        self.threads = threads
        self.notes = set_threads(threads)
        self.notes.append(f"torch {torch.__version__}")
        self.compile_s = 0.0
        self._compiled_shapes = set()
        self.model = _build_model(weights)
        kw = dict(lr=lr, betas=(0.9, 0.999), eps=1e-8)
        if variant == "eager_foreach":
            kw["foreach"] = True
        elif variant == "eager_fused":
            kw["fused"] = True
        self.opt = torch.optim.Adam(self.model.parameters(), **kw)
        self.notes.append(f"Adam({', '.join(f'{k}={v}' for k, v in kw.items())})")

        model, opt = self.model, self.opt

        def step(x, noise):
            opt.zero_grad(set_to_none=True)
            loss = _loss_fn(model, x, noise)
            loss.backward()
            opt.step()
            return loss

        def infer(x):
            mu, _ = model.encode(x)
            return torch.sigmoid(model.decode_logits(mu))

        if variant == "compile":
            dyn = torch._dynamo.config
            for attr in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit",
                         "accumulated_recompile_limit"):
                if hasattr(dyn, attr):
                    setattr(dyn, attr, max(getattr(dyn, attr), 256))
            self._step = torch.compile(step, dynamic=False)
            self._infer = torch.compile(infer, dynamic=False)
            self.notes.append("torch.compile(step) and torch.compile(infer), mode default, "
                              "dynamic=False; compiled on first call per shape")
        else:
            self._step = step
            self._infer = infer

    # -- conversion -------------------------------------------------------------------
    def _t(self, a):
        torch = _torch
        if isinstance(a, torch.Tensor):
            return a
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    def prep(self, x, noise=None):
        xt = self._t(x)
        if noise is None:
            return xt
        noise = np.asarray(noise) if not isinstance(noise, _torch.Tensor) else noise
        if noise.ndim == 2:
            noise = noise[None]
        return xt, self._t(noise)

    # -- API --------------------------------------------------------------------------
    def loss(self, x, noise) -> float:
        x, noise = self.prep(x, noise)
        with _torch.no_grad():
            return float(_loss_fn(self.model, x, noise))

    def _maybe_compile_timed(self, key, fn, *args):
        if self.variant == "compile" and key not in self._compiled_shapes:
            t0 = time.perf_counter()
            out = fn(*args)
            self.compile_s += time.perf_counter() - t0
            self._compiled_shapes.add(key)
            return out
        return fn(*args)

    def train_step(self, x, noise) -> None:
        if self.variant == "compile":
            key = ("step", tuple(x.shape), tuple(noise.shape))
            self._maybe_compile_timed(key, self._step, self._t(x), self._t(noise))
        else:
            self._step(self._t(x), self._t(noise))

    def infer(self, x):
        x = self._t(x)
        with _torch.inference_mode():
            if self.variant == "compile":
                return self._maybe_compile_timed(("infer", tuple(x.shape)), self._infer, x)
            return self._infer(x)

    def warmup(self, x, noise, steps=3):
        """Run a few train steps and inferences (triggers torch.compile); changes weights."""
        for _ in range(steps):
            self.train_step(x, noise)
            self.infer(x)

    def sync(self) -> None:
        return None

    def reset(self, weights) -> None:
        """Load ``weights`` (npvae layout) and zero Adam's state, all in place (no recompile).

        Lets a harness start every timing window from the same point, so that no peer drifts
        into a regime (e.g. denormal Adam moments after thousands of steps on the same data)
        that another peer never reaches.
        """
        torch = _torch
        check_weights(weights)
        m = self.model
        with torch.no_grad():
            for lin, key in ((m.enc0, "encoder.0"), (m.enc_out, "encoder.out"),
                             (m.dec0, "decoder.0"), (m.dec_out, "decoder.out")):
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(weights[key + ".W"].T)))
                lin.bias.copy_(torch.from_numpy(np.ascontiguousarray(weights[key + ".b"])))
            for st in self.opt.state.values():
                for v in st.values():
                    if isinstance(v, torch.Tensor):
                        v.zero_()

    def denormal_fraction(self) -> float:
        """Fraction of Adam's m and v entries that are float32 denormals (0 < |a| < 2^-126)."""
        tot = den = 0
        tiny = np.finfo(np.float32).tiny
        for st in self.opt.state.values():
            for k in ("exp_avg", "exp_avg_sq"):
                if k in st:
                    a = st[k].detach().numpy()
                    tot += a.size
                    den += int(np.count_nonzero((a != 0) & (np.abs(a) < tiny)))
        return den / tot if tot else 0.0

    def get_weights(self) -> dict:
        m = self.model
        out = {}
        for lin, key in ((m.enc0, "encoder.0"), (m.enc_out, "encoder.out"),
                         (m.dec0, "decoder.0"), (m.dec_out, "decoder.out")):
            out[key + ".W"] = lin.weight.detach().numpy().T.copy()
            out[key + ".b"] = lin.bias.detach().numpy().copy()
        return out


def make(weights, lr=1e-3, threads=2, variant="eager"):
    """Build a torch peer; see the module docstring for the variants."""
    return TorchVAE(weights, lr=lr, threads=threads, variant=variant)
