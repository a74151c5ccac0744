"""PyTorch peer for the AIS benchmark: the algorithm of npvae.inference.ais in PyTorch.

Annealed importance sampling from the prior N(0, I) to p(x, z) on a sigmoid schedule, one
HMC transition (``n_leapfrog`` leapfrog steps, unit mass) per temperature, K chains per data
point in chain-major rows (r = k * N + n), written as lxuechen/BDMC writes it: the
potential's gradient by ``torch.autograd.grad`` on a fresh leaf z at every leapfrog step,
everything else under ``torch.no_grad``. The step size is one per data point, from a
warm-up annealing pass that adapts it (log step += 0.3 (acceptance - target), clipped), the
record smoothed by a centred moving average of 5 and read by linear interpolation in
schedule position during the run, which adapts nothing: the same rules as npvae's, so the
two do the same work and have the same accuracy.

The decoder is a stack of ``torch.nn.Linear`` with ReLU between them (what nn.Module code
looks like), its parameters frozen (``requires_grad_(False)``), so autograd computes no
weight gradients.
"""

from __future__ import annotations

import math
import time

import numpy as np

LOG_2PI = math.log(2 * math.pi)


def schedule(n_steps, delta=4.0):
    t = np.linspace(0.0, 1.0, n_steps + 1)
    s = 1 / (1 + np.exp(-delta * (2 * t - 1)))
    b = (s - s[0]) / (s[-1] - s[0])
    b[0], b[-1] = 0.0, 1.0
    return b


class TorchAIS:
    """AIS over a decoder given as npvae-layout weights ``[(W (in, out), b), ...]``.

    ``likelihood`` is ``"bernoulli"`` (logits) or ``"gaussian"`` with fixed ``variance``.
    """

    def __init__(self, layers, likelihood, x, chains, variance=1.0, threads=1):
        import torch

        torch.set_num_threads(threads)
        self.torch = torch
        mods = []
        for i, (w, b) in enumerate(layers):
            lin = torch.nn.Linear(w.shape[0], w.shape[1])
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
                lin.bias.copy_(torch.from_numpy(b))
            mods.append(lin)
            if i < len(layers) - 1:
                mods.append(torch.nn.ReLU())
        self.decoder = torch.nn.Sequential(*mods)
        for p in self.decoder.parameters():
            p.requires_grad_(False)
        self.likelihood, self.variance = likelihood, float(variance)
        self.n, self.k = x.shape[0], chains
        self.x = torch.from_numpy(np.tile(x, (chains, 1)))  # chain-major rows
        self.zdim = layers[0][0].shape[0]

    def log_likelihood(self, z):
        o = self.decoder(z)
        if self.likelihood == "bernoulli":
            return -torch_bce(self.torch, o, self.x)
        d = o.shape[1]
        return -0.5 * (((self.x - o) ** 2).sum(1) / self.variance
                       + d * math.log(2 * math.pi * self.variance))

    def value_and_grad(self, z):
        z = z.detach().requires_grad_(True)
        with self.torch.enable_grad():
            ll = self.log_likelihood(z)
            (g,) = self.torch.autograd.grad(ll.sum(), z)
        return ll.detach(), g

    def hmc(self, z, ll, g, beta, eps, n_leapfrog, gen, need_prob=True):
        """One HMC transition at inverse temperature beta; eps is (R, 1). Returns the
        acceptance probabilities (warm-up) or the accept flags (the run)."""
        torch = self.torch
        v = torch.randn(z.shape, generator=gen)
        h0 = 0.5 * (z * z).sum(1) - beta * ll + 0.5 * (v * v).sum(1)
        zn, lln, gn = z, ll, g
        v = v + 0.5 * eps * (beta * gn - zn)
        for i in range(n_leapfrog):
            zn = zn + eps * v
            lln, gn = self.value_and_grad(zn)
            v = v + (eps if i < n_leapfrog - 1 else 0.5 * eps) * (beta * gn - zn)
        h1 = 0.5 * (zn * zn).sum(1) - beta * lln + 0.5 * (v * v).sum(1)
        log_ratio = (h0 - h1).double()
        ok = torch.isfinite(log_ratio)
        u = torch.rand(log_ratio.shape, generator=gen, dtype=torch.float64)
        acc = ok & (torch.log(u) < log_ratio)
        z = torch.where(acc[:, None], zn, z)
        ll = torch.where(acc, lln, ll)
        g = torch.where(acc[:, None], gn, g)
        if not need_prob:
            return z, ll, g, acc
        prob = torch.where(ok, torch.exp(torch.clamp(log_ratio, max=0.0)),
                           torch.zeros_like(log_ratio))
        return z, ll, g, prob

    def run(self, n_steps, warmup, n_leapfrog=10, target=0.65, step0=0.1, seed=0):
        """Warm-up pass, then the AIS run. Returns (log_px (N,), stderr (N,), accept,
        seconds of the run, seconds of warm-up)."""
        torch = self.torch
        gen = torch.Generator().manual_seed(seed)
        r, n, k = self.n * self.k, self.n, self.k
        with torch.no_grad():
            t0 = time.perf_counter()
            z = torch.randn((r, self.zdim), generator=gen)
            ll, g = self.value_and_grad(z)
            wb = schedule(warmup)
            log_eps = torch.full((n,), math.log(step0), dtype=torch.float64)
            record = []
            for t in range(1, warmup + 1):
                eps = torch.exp(log_eps).float().repeat(k)[:, None]
                z, ll, g, prob = self.hmc(z, ll, g, float(wb[t]), eps, n_leapfrog, gen)
                a = prob.reshape(k, n).mean(0)
                log_eps = torch.clamp(log_eps + 0.3 * (a - target), math.log(1e-6),
                                      math.log(10.0))
                record.append(log_eps)
            rec = torch.stack(record)
            pad = torch.cat([rec[:1], rec[:1], rec, rec[-1:], rec[-1:]])
            rec = (pad[:-4] + pad[1:-3] + pad[2:-2] + pad[3:-1] + pad[4:]) / 5
            t1 = time.perf_counter()
            betas = schedule(n_steps)
            pos = np.linspace(0, warmup - 1, n_steps + 1)
            z = torch.randn((r, self.zdim), generator=gen)
            ll, g = self.value_and_grad(z)
            log_w = torch.zeros(r, dtype=torch.float64)
            prob_sum = torch.zeros(r, dtype=torch.float64)
            for t in range(1, n_steps + 1):
                log_w += (betas[t] - betas[t - 1]) * ll.double()
                if t == n_steps:
                    break
                i0 = min(int(pos[t]), warmup - 2)
                f = pos[t] - i0
                le = (1 - f) * rec[i0] + f * rec[i0 + 1]
                eps = torch.exp(le).float().repeat(k)[:, None]
                z, ll, g, acc = self.hmc(z, ll, g, float(betas[t]), eps, n_leapfrog, gen,
                                         need_prob=False)
                prob_sum += acc
            t2 = time.perf_counter()
        lw = log_w.reshape(k, n).numpy()
        m = lw.max(0)
        w = np.exp(lw - m)
        est = m + np.log(w.mean(0))
        se = w.std(0, ddof=1) / (np.sqrt(k) * w.mean(0))
        acc = float(prob_sum.mean()) / max(1, n_steps - 1)
        return est, se, acc, t2 - t1, t1 - t0


def torch_bce(torch, logits, x):
    """Per-row Bernoulli NLL from logits (BCE with logits, summed over pixels)."""
    return torch.nn.functional.binary_cross_entropy_with_logits(
        logits, x, reduction="none").sum(1)
