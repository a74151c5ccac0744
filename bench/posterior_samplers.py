"""MH, MALA and HMC against the encoder on a trained run, in time per effective sample.

    python bench/posterior_samplers.py RUN [--examples 20] [--chains 8] [--samples 1000]

For the first ``--examples`` test images of the run's dataset, every sampler draws from
the decoder's posterior p(z|x) (``--chains`` chains per image, all images in one batch,
500 warm-up steps) and the encoder draws from q(z|x). Prints per method: wall time per draw
and per effective draw (sampling time over the summed ESS of the worst latent dimension of
each image), acceptance, the largest split R-hat, and how far each method's posterior mean
is from HMC's, in units of HMC's posterior sd (the encoder's distance is its bias). The
machine may be shared: compare the methods within one run.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from npvae.cli import runs  # noqa: E402
from npvae.inference.samplers import sample_posterior  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a run folder of `npvae train`")
    ap.add_argument("--examples", type=int, default=20)
    ap.add_argument("--chains", type=int, default=8)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    ckpt, run_dir = runs.resolve_checkpoint(a.run)
    model, _ = runs.load_model(ckpt)
    _, x_test = runs.load_data(runs.read_run_config(run_dir)["options"])
    x = x_test[:a.examples]
    n, draws = len(x), a.samples * a.chains
    print(f"{ckpt}: {n} test images, latent dim {model.latent_dim}, {a.chains} chains x "
          f"{a.samples} draws after {a.warmup} warm-up")
    res = {}
    for method in ("rwmh", "mala", "hmc"):
        c = sample_posterior(model, x, method=method, n_samples=a.samples, warmup=a.warmup,
                             chains=a.chains, rng=a.seed)
        ess = c.ess().min(axis=1)
        res[method] = dict(per=c.seconds / (draws * n) * 1e6, per_ess=c.seconds / ess.sum() * 1e6,
                           accept=float(c.accept.mean()), rhat=float(np.nanmax(c.rhat())),
                           ess=float(ess.mean()), mean=c.mean(),
                           sd=np.sqrt(np.diagonal(c.cov(), axis1=1, axis2=2)),
                           warm=c.warmup_seconds)
    t = time.perf_counter()
    mu, lv = model.encode(x)
    _ = mu[None] + np.exp(0.5 * lv)[None] * np.random.default_rng(0).standard_normal(
        (draws, n, model.latent_dim))
    per = (time.perf_counter() - t) / (draws * n) * 1e6
    res["encoder"] = dict(per=per, per_ess=per, accept=float("nan"), rhat=float("nan"),
                          ess=float(draws), mean=mu, warm=0.0)
    ref = res["hmc"]
    print(f"{'method':<8} {'warm-up s':>9} {'us/draw':>9} {'us/eff.draw':>12} "
          f"{'ESS min/img':>11} {'accept':>7} {'R-hat max':>9} {'|mean - HMC| (sd)':>18}")
    for name, r in res.items():
        dist = np.linalg.norm((r["mean"] - ref["mean"]) / ref["sd"], axis=1).mean()
        print(f"{name:<8} {r['warm']:9.2f} {r['per']:9.2f} {r['per_ess']:12.2f} "
              f"{r['ess']:11.0f} {r['accept']:7.2f} {r['rhat']:9.3f} {dist:18.3f}")


if __name__ == "__main__":
    main()
