"""The true posterior of a trained decoder against the encoder's amortised guess, on digits.

    python examples/mcmc_vs_amortised.py [--epochs 150] [--points 4] [--out DIR] [--docs]

Trains a VAE with a 2-D latent space on scikit-learn's 8x8 digits, then, for a few test
images, computes the decoder's true posterior p(z|x) on a grid (quadrature: in 2-D the
normaliser p(x) is a sum), samples it by MCMC (random-walk MH, MALA, HMC), and fits the
per-image optimum Gaussian q*. The figure draws, for each image, the posterior density,
HMC's samples, and the 2-sigma ellipses of the encoder's q(z|x) and of q*(z|x); one table
per method gives the wall time per posterior sample and per effective sample, the
acceptance, and the errors of the posterior mean and covariance against quadrature.
Writes ``mcmc_vs_amortised.png`` to ``--out`` (default ``./npvae-examples``); with
``--docs`` also the copy under docs/images/examples/ that the README shows.
"""

import shutil
import time
from pathlib import Path

import _common
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse
from scipy.special import logsumexp

from npvae import VAE
from npvae.datasets import load_dataset
from npvae.inference.ais import ais
from npvae.inference.joint import LogJoint
from npvae.inference.metrics import elbo_terms
from npvae.inference.qstar import optimise_qstar
from npvae.inference.samplers import sample_posterior

GRID = 241  # quadrature points per axis


def log_joint_grid(vae, xi, lo, hi):
    """log p(x, z) on a GRID x GRID grid over the box [lo, hi] (rows z2, columns z1)."""
    g0, g1 = np.linspace(lo[0], hi[0], GRID), np.linspace(lo[1], hi[1], GRID)
    zz = np.stack(np.meshgrid(g0, g1, indexing="xy"), -1).reshape(-1, 2)
    lp = LogJoint(vae, xi[None], chains=len(zz))(zz.astype(vae.dtype)).copy()
    return g0, g1, zz, lp


def quadrature(vae, xi, extent=4.5):
    """The posterior of one image by quadrature: a coarse grid over [-4.5, 4.5]^2 finds the
    square box holding its mass (density above 1e-6 of the peak), a fine grid over that
    box gives the density, log p(x) (the grid sum), the mean and the covariance."""
    lo, hi = np.full(2, -extent), np.full(2, extent)
    for fine in (False, True):
        g0, g1, zz, lp = log_joint_grid(vae, xi, lo, hi)
        if fine:
            break
        keep = (lp > lp.max() + np.log(1e-6)).reshape(GRID, GRID)
        cols, rows = np.where(keep.any(0))[0], np.where(keep.any(1))[0]
        lo = np.array([g0[max(cols[0] - 2, 0)], g1[max(rows[0] - 2, 0)]])
        hi = np.array([g0[min(cols[-1] + 2, GRID - 1)], g1[min(rows[-1] + 2, GRID - 1)]])
        centre, half = (lo + hi) / 2, (hi - lo).max() / 2  # a square box, for the figure
        lo, hi = centre - half, centre + half
    cell = (g0[1] - g0[0]) * (g1[1] - g1[0])
    w = np.exp(lp - logsumexp(lp))
    shown = (lp > lp.max() + np.log(1e-4)).reshape(GRID, GRID)  # the figure's square view
    cols, rows = np.where(shown.any(0))[0], np.where(shown.any(1))[0]
    c0 = np.array([g0[cols[0]] + g0[cols[-1]], g1[rows[0]] + g1[rows[-1]]]) / 2
    h = 0.6 * max(g0[cols[-1]] - g0[cols[0]], g1[rows[-1]] - g1[rows[0]])
    mean = w @ zz
    c = zz - mean
    return {"g0": g0, "g1": g1, "density": w.reshape(GRID, GRID) / cell,
            "log_px": float(logsumexp(lp) + np.log(cell)), "mean": mean,
            "cov": (w[:, None] * c).T @ c, "view": [(c0[0] - h, c0[0] + h),
                                                    (c0[1] - h, c0[1] + h)]}


def errors(mean, cov, truth):
    """Mean error in units of the true posterior sd (norm over the 2 dims) and the
    relative Frobenius error of the covariance."""
    sd = np.sqrt(np.diag(truth["cov"]))
    return (float(np.linalg.norm((mean - truth["mean"]) / sd)),
            float(np.linalg.norm(cov - truth["cov"]) / np.linalg.norm(truth["cov"])))


def table(name, rows, note):
    print(f"\n{name}  ({note})")
    print(f"  {'image':>5} {'setup s':>8} {'us/sample':>10} {'us/eff.sample':>14} "
          f"{'accept':>7} {'ESS min':>8} {'mean err (sd)':>14} {'cov err':>8}")
    for r in rows:
        print(f"  {r['image']:>5} {r['setup']:8.3f} {r['per_sample']:10.2f} "
              f"{r['per_ess']:14.2f} {r['accept']:>7} {r['ess']:>8} {r['mean_err']:14.3f} "
              f"{r['cov_err']:8.3f}")


def gaussian_rows(pick, truth, mu, lv, setup, per):
    """Table rows of a diagonal Gaussian (independent draws: ESS = draws)."""
    rows = []
    for i in range(len(pick)):
        me, ce = errors(mu[i], np.diag(np.exp(lv[i])), truth[i])
        rows.append(dict(image=pick[i], setup=setup, per_sample=per, per_ess=per,
                         accept="-", ess="-", mean_err=me, cov_err=ce))
    return rows


def ellipse(ax, mean, cov, color, label):
    vals, vecs = np.linalg.eigh(cov)
    angle = np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1]))
    ax.add_patch(Ellipse(mean, 4 * np.sqrt(vals[1]), 4 * np.sqrt(vals[0]), angle=angle,
                         fill=False, color=color, lw=2, label=label))


def main(argv=None):
    ap = _common.parser(__doc__, epochs=150, n_train=1500)
    ap.set_defaults(out=Path.cwd() / "npvae-examples")
    ap.add_argument("--points", type=int, default=4, help="test images shown (default 4)")
    ap.add_argument("--candidates", type=int, default=40,
                    help="test images they are chosen from (default 40)")
    ap.add_argument("--samples", type=int, default=2000,
                    help="MCMC draws kept per chain (default 2000)")
    ap.add_argument("--chains", type=int, default=8, help="chains per image (default 8)")
    ap.add_argument("--docs", action="store_true",
                    help="also copy the figure to docs/images/examples/ (for the README)")
    args = _common.parse(ap, argv)
    t0 = time.perf_counter()
    ds = load_dataset("digits", n_train=args.n_train, seed=args.seed, progress=False)
    vae = VAE(64, 2, hidden=(256,), seed=args.seed)
    vae.fit(ds.x_train, epochs=args.epochs, batch_size=64, lr=2e-3, lr_schedule="cosine",
            progress=False, seed=args.seed, threads=args.threads)
    print(f"trained a 2-D latent VAE on {len(ds.x_train)} digits in "
          f"{time.perf_counter() - t0:.0f} s; test ELBO "
          f"{vae.elbo(ds.x_test, n_samples=10, rng=0).mean():.2f} nats")
    # Which test images? Of the first --candidates, the --points whose encoder is worst
    # (largest log p(x) - ELBO(q), by quadrature) and, for contrast, one typical image.
    t = time.perf_counter()
    cand = ds.x_test[:args.candidates]
    truth = [quadrature(vae, xi) for xi in cand]
    elbo_c = -np.add(*elbo_terms(vae, cand, n_samples=2000, rng=1))
    gap = np.array([tr["log_px"] for tr in truth]) - elbo_c
    order = np.argsort(gap)
    pick = [int(i) for i in order[::-1][:args.points - 1]] + [int(order[len(order) // 2])]
    print(f"quadrature for {len(cand)} test images on {GRID}x{GRID} grids: "
          f"{time.perf_counter() - t:.1f} s; log p(x) - ELBO(q) from {gap.min():.3f} to "
          f"{gap.max():.3f} nats (median {np.median(gap):.3f}); showing test images {pick} "
          "(the worst, then a median one)")
    x = cand[pick]
    truth = [truth[i] for i in pick]
    n = len(x)
    a = ais(vae, x, n_steps=1000, chains=64, rng=0)
    for i, tr in enumerate(truth):
        print(f"  image {pick[i]}: log p(x) by quadrature {tr['log_px']:.3f}, by AIS "
              f"{a.log_px[i]:.3f} +- {a.stderr[i]:.3f}; ELBO(q) {elbo_c[pick[i]]:.3f}")

    summary = {}
    draws = args.samples * args.chains
    # the encoder: one pass, then independent draws
    t = time.perf_counter()
    mu, lv = vae.encode(x)
    t_enc = time.perf_counter() - t
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    _ = mu[None] + np.exp(0.5 * lv)[None] * rng.standard_normal((draws, n, 2))
    per = (time.perf_counter() - t) / (draws * n) * 1e6
    summary["encoder q(z|x)"] = gaussian_rows(pick, truth, mu, lv, t_enc / n, per)
    table("encoder q(z|x)", summary["encoder q(z|x)"],
          "setup: one encoder pass per image; then independent draws")

    t = time.perf_counter()
    q = optimise_qstar(vae, x, rng=0)
    fit = time.perf_counter() - t
    summary["q* (per-image fit)"] = gaussian_rows(pick, truth, q.mu, q.logvar, fit / n, per)
    table("q*", summary["q* (per-image fit)"],
          f"setup: Adam on the 4 numbers of each image, {q.steps.mean():.0f} steps on "
          f"average, all {n} together; then independent draws")
    elbo_q = elbo_c[pick]
    log_px = np.array([tr["log_px"] for tr in truth])
    print(f"  ELBO(q) {elbo_q.mean():.3f}, ELBO(q*) {q.elbo.mean():.3f}, log p(x) "
          f"{log_px.mean():.3f} nats: amortisation gap {(q.elbo - elbo_q).mean():.3f}, "
          f"approximation gap {(log_px - q.elbo).mean():.3f}")

    chains = {}
    for method in ("rwmh", "mala", "hmc"):
        c = sample_posterior(vae, x, method=method, n_samples=args.samples,
                             warmup=500, chains=args.chains, rng=args.seed)
        chains[method] = c
        ess = c.ess().min(axis=1)  # the worse of the two dimensions, per image
        per = c.seconds / (draws * n) * 1e6
        rows = []
        for i in range(n):
            me, ce = errors(c.mean()[i], c.cov()[i], truth[i])
            rows.append(dict(image=pick[i], setup=c.warmup_seconds / n, per_sample=per,
                             per_ess=c.seconds / ess.sum() * 1e6, accept=f"{c.accept[i]:.2f}",
                             ess=f"{ess[i]:.0f}", mean_err=me, cov_err=ce))
        summary[method] = rows
        table({"rwmh": "random-walk MH", "mala": "MALA", "hmc": "HMC (10 leapfrog)"}[method],
              rows, f"setup: 500 warm-up steps; {args.chains} chains x {args.samples} draws, "
              f"{c.seconds:.2f} s for all {n} images together; max split R-hat "
              f"{np.nanmax(c.rhat()):.3f}")

    print("\nsummary (mean over the images)")
    print(f"  {'method':<20} {'setup s':>8} {'us/sample':>10} {'us/eff.sample':>14} "
          f"{'mean err (sd)':>14} {'cov err':>8}")
    for name, rows in summary.items():
        print(f"  {name:<20} {rows[0]['setup']:8.3f} "
              f"{np.mean([r['per_sample'] for r in rows]):10.2f} "
              f"{np.mean([r['per_ess'] for r in rows]):14.2f} "
              f"{np.mean([r['mean_err'] for r in rows]):14.3f} "
              f"{np.mean([r['cov_err'] for r in rows]):8.3f}")

    fig = Figure(figsize=(4.2 * n, 4.6), dpi=90, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, squeeze=False)[0]
    hmc = chains["hmc"].samples
    for i, ax in enumerate(axes):
        tr = truth[i]
        dens = tr["density"]  # log-spaced levels, so that tails and small modes show
        levels = dens.max() * np.logspace(-4, 0, 9)
        ax.contourf(tr["g0"], tr["g1"], dens, levels=levels, cmap="Blues",
                    norm=LogNorm(levels[0], levels[-1]), extend="neither")
        s = hmc[::4, :, i].reshape(-1, 2)
        ax.scatter(*s[:600].T, s=3, c="k", alpha=0.35, linewidths=0, label="HMC samples")
        ellipse(ax, mu[i], np.diag(np.exp(lv[i])), "tab:red", "encoder q(z|x), 2 sd")
        ellipse(ax, q.mu[i], np.diag(np.exp(q.logvar[i])), "tab:orange", "q*(z|x), 2 sd")
        ax.plot(*tr["mean"], "P", ms=10, mfc="white", mec="black", label="true mean")
        ax.set(xlim=tr["view"][0], ylim=tr["view"][1],
               xlabel="z1", ylabel="z2" if i == 0 else None, aspect="equal",
               title=f"test image {pick[i]}: log p(x) - ELBO(q) = {gap[pick[i]]:.2f}")
        inset = ax.inset_axes([0.78, 0.78, 0.2, 0.2])
        inset.imshow(x[i].reshape(8, 8), cmap="gray_r")
        inset.set(xticks=[], yticks=[])
        if i == 0:
            ax.legend(loc="lower left", fontsize=8, framealpha=0.8)
    fig.suptitle("the decoder's true posterior p(z|x) (blue, by quadrature; contours a "
                 "factor 10^0.5 apart) against the encoder's q(z|x) and the per-image "
                 "optimum q*(z|x)")
    path = args.out / "mcmc_vs_amortised.png"
    fig.savefig(path)
    print(f"\nwrote {path}  (total {time.perf_counter() - t0:.0f} s)")
    if args.docs:
        docs = _common.ROOT / "docs" / "images" / "examples" / path.name
        shutil.copyfile(path, docs)
        print(f"copied it to {docs}")


if __name__ == "__main__":
    main()
