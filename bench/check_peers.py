"""Check that every installed peer computes the same VAE as a plain-NumPy float64 reference.

Usage (from the repository root)::

    /work/venv/bin/python bench/check_peers.py [--n 16] [--steps 3] [--seed 0]

1. Random weights in npvae's layout, random binary x (N=16) and noise (1, N, 20).
2. Each peer variant's loss next to the float64 NumPy reference (relative difference must be
   below ~1e-5 in float32).
3. ``--steps`` Adam steps (lr 1e-3) in each peer variant and in the NumPy float64 reference
   (hand-written gradients + PyTorch-form Adam), from the same weights, x and noise; the
   largest relative weight difference (max |a-b| / max |b| per array) is compared with ~1e-4.

Exit code 0 when every available peer agrees, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from bench.peers import LATENT, WEIGHT_SHAPES, jax_vae, random_weights, torch_vae  # noqa: E402
from npvae.kernels._reference import gaussian_kl  # noqa: E402 (tests/test_gaussian.py checks it)


# ---- plain NumPy float64 reference ---------------------------------------------------------
def ref_loss_and_grad(w, x, noise):
    """-ELBO (mean over batch of sum-over-pixels BCE + KL) and its gradient, float64."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    x, eps = x.astype(np.float64), noise.astype(np.float64)[0]
    n = x.shape[0]
    a1 = x @ w["encoder.0.W"] + w["encoder.0.b"]
    h1 = np.maximum(a1, 0)
    out = h1 @ w["encoder.out.W"] + w["encoder.out.b"]
    mu, lv = out[:, :LATENT], out[:, LATENT:]
    std = np.exp(0.5 * lv)
    z = mu + std * eps
    a2 = z @ w["decoder.0.W"] + w["decoder.0.b"]
    h2 = np.maximum(a2, 0)
    lg = h2 @ w["decoder.out.W"] + w["decoder.out.b"]
    bce = np.maximum(lg, 0) - lg * x + np.log1p(np.exp(-np.abs(lg)))
    loss = bce.sum() / n + gaussian_kl(mu, lv).sum() / n
    g = {}
    dlg = (1 / (1 + np.exp(-lg)) - x) / n
    g["decoder.out.W"], g["decoder.out.b"] = h2.T @ dlg, dlg.sum(0)
    da2 = (dlg @ w["decoder.out.W"].T) * (a2 > 0)
    g["decoder.0.W"], g["decoder.0.b"] = z.T @ da2, da2.sum(0)
    dz = da2 @ w["decoder.0.W"].T
    dmu = dz + mu / n
    dlv = dz * eps * 0.5 * std + 0.5 * (np.exp(lv) - 1) / n
    dout = np.concatenate([dmu, dlv], axis=1)
    g["encoder.out.W"], g["encoder.out.b"] = h1.T @ dout, dout.sum(0)
    da1 = (dout @ w["encoder.out.W"].T) * (a1 > 0)
    g["encoder.0.W"], g["encoder.0.b"] = x.T @ da1, da1.sum(0)
    return loss, g


def ref_adam(w, x, noise, steps, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    p = {k: v.astype(np.float64) for k, v in w.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(v_) for k, v_ in p.items()}
    for t in range(1, steps + 1):
        _, g = ref_loss_and_grad(p, x, noise)
        for k in p:
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
            p[k] -= lr / (1 - b1**t) * m[k] / (np.sqrt(v[k]) / np.sqrt(1 - b2**t) + eps)
    return p


def ref_gradcheck(w, x, noise, n_probe=6, h=1e-6, seed=1):
    """Central differences on a few entries: proves the reference gradient itself."""
    rng = np.random.default_rng(seed)
    w64 = {k: v.astype(np.float64) for k, v in w.items()}
    _, g = ref_loss_and_grad(w64, x, noise)
    worst = 0.0
    for k in WEIGHT_SHAPES:
        for _ in range(n_probe):
            idx = tuple(rng.integers(0, s) for s in w64[k].shape)
            old = w64[k][idx]
            w64[k][idx] = old + h
            lp, _ = ref_loss_and_grad(w64, x, noise)
            w64[k][idx] = old - h
            lm, _ = ref_loss_and_grad(w64, x, noise)
            w64[k][idx] = old
            fd = (lp - lm) / (2 * h)
            worst = max(worst, abs(fd - g[k][idx]) / max(1e-6, abs(fd) + abs(g[k][idx])))
    return worst


def weight_diff(a, b):
    """max over arrays of max|a-b| / max|b|."""
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k])) / np.max(np.abs(b[k])))
               for k in WEIGHT_SHAPES)


def update_diff(a, b, w0):
    """max over arrays of max|(a-w0)-(b-w0)| / max|b-w0|: compares the Adam updates themselves."""
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))
                     / np.max(np.abs(b[k] - w0[k].astype(np.float64))))
               for k in WEIGHT_SHAPES)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for the peers (default: leave as the process has it)")
    ap.add_argument("--loss-tol", type=float, default=1e-5)
    ap.add_argument("--weight-tol", type=float, default=1e-4)
    args = ap.parse_args(argv)

    w = random_weights(args.seed)
    rng = np.random.default_rng(args.seed + 1)
    x = (rng.random((args.n, 784)) < 0.3).astype(np.float32)
    noise = rng.standard_normal((1, args.n, LATENT)).astype(np.float32)

    ref = ref_loss_and_grad(w, x, noise)[0]
    print(f"reference gradient vs central differences: worst rel err "
          f"{ref_gradcheck(w, x, noise):.2e}")
    ref_w = ref_adam(w, x, noise, args.steps)
    print(f"NumPy float64 reference loss: {ref:.10g}   (N={args.n}, L=1)")
    print(f"{'peer':<22}{'loss':>16}{'rel diff':>11}{'weights Δ':>11}{'update Δ':>11}  ok")
    ok_all = True
    for mod in (torch_vae, jax_vae):
        if not mod.available():
            print(f"{mod.__name__.split('.')[-1]:<22} UNAVAILABLE: {mod.why_unavailable()}")
            continue
        for variant in mod.VARIANTS:
            label = f"{mod.__name__.split('.')[-1].replace('_vae', '')}/{variant}"
            try:
                peer = mod.make(w, lr=1e-3, threads=args.threads, variant=variant)
                xt, nt = peer.prep(x, noise)
                lo = peer.loss(xt, nt)
                for _ in range(args.steps):
                    peer.train_step(xt, nt)
                peer.sync()
                pw = peer.get_weights()
            except Exception as e:  # report and go on with the other peers
                print(f"{label:<22} FAILED: {type(e).__name__}: {str(e)[:300]}")
                ok_all = False
                continue
            rel = abs(lo - ref) / abs(ref)
            wd = weight_diff(pw, ref_w)
            ud = update_diff(pw, ref_w, w)
            ok = rel < args.loss_tol and wd < args.weight_tol
            ok_all &= ok
            print(f"{label:<22}{lo:>16.10g}{rel:>11.2e}{wd:>11.2e}{ud:>11.2e}  "
                  f"{'ok' if ok else 'FAIL'}")
    print("weights Δ: max over arrays of max|peer - ref| / max|ref| after "
          f"{args.steps} Adam steps; update Δ: the same relative to the update size")
    print("ALL AGREE" if ok_all else "DISAGREEMENT (see FAIL lines)")
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
