"""VAE against IWAE (k = 5 and k = 50): test log p(x), ELBO and active units, same epochs.

    python examples/iwae.py [--dataset digits|sprites] [--epochs N] [--out DIR]
                            [--objective iwae|iwae-dreg] [--ks 5 50] [--readme-images]

Trains one model per objective on built-in data, the same architecture, epochs, batch size
and seed: the ELBO (a VAE), then the k-sample importance-weighted bound (Burda et al. 2016)
for each k. On the test set it reports log p(x) estimated by the IWAE bound with k = 5000
samples (a lower bound, tight to a fraction of a nat here), the ELBO, the active units (Burda
et al.'s count: latent dimensions whose posterior mean varies with x, Var_x E[z_j | x] >
0.01) and the training time. Digits are binarised: a fresh draw x ~ Bernoulli(pixel) every
epoch, one fixed draw for the test set, so log p(x) is a true discrete log-likelihood.

Writes ``iwae.png`` to ``--out`` (default ``runs/examples``; ``--readme-images`` writes the
README's copy in docs/images/examples): the variance of every latent's posterior mean,
sorted, per model (Burda et al.'s figure 3), the active units during training, the test
log p(x) and ELBO of each model, and samples of each.
"""

import time

import _common
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from npvae import VAE
from npvae.datasets import load_dataset
from npvae.inference.metrics import active_units
from npvae.training.trainer import Callback

SETTINGS = {  # per dataset: epochs, training rows, architecture, batch size, lr
    "digits": {"epochs": 300, "n_train": 1500, "hidden": (200,), "latent_dim": 50,
               "batch_size": 100, "lr": 3e-3},
    "sprites": {"epochs": 8, "n_train": 10000, "hidden": (256,), "latent_dim": 50,
                "batch_size": 100, "lr": 1e-3},
}


def binarized(x, seed):
    return (np.random.default_rng(seed).random(x.shape) < x).astype(np.float32)


class ActiveUnits(Callback):
    """Counts the test set's active units every ``every`` epochs (an encoder pass)."""

    def __init__(self, x, every):
        self.x, self.every, self.epochs, self.counts = x, every, [], []

    def on_epoch_end(self, trainer, epoch, record):
        if (epoch + 1) % self.every == 0:
            self.epochs.append(epoch + 1)
            self.counts.append(active_units(trainer.model, self.x)[0])


def main(argv=None):
    ap = _common.parser(__doc__, epochs=None, n_train=None, latent_dim=None)
    ap.add_argument("--dataset", choices=tuple(SETTINGS), default="digits")
    ap.add_argument("--objective", choices=("iwae", "iwae-dreg"), default="iwae",
                    help="the importance-weighted objective to compare with the ELBO")
    ap.add_argument("--ks", type=int, nargs="+", default=[5, 50],
                    help="importance samples of the IWAE models (default: 5 50)")
    ap.add_argument("--n-test", type=int, default=None,
                    help="test rows (default: all of digits' 297, 500 sprites)")
    ap.add_argument("--eval-k", type=int, default=5000,
                    help="importance samples of the test log p(x) (default: 5000)")
    args = _common.parse(ap, argv)
    cfg = SETTINGS[args.dataset]
    epochs = args.epochs or cfg["epochs"]
    n_test = args.n_test or (297 if args.dataset == "digits" else 500)
    t_start = time.perf_counter()

    ds = load_dataset(args.dataset, n_train=args.n_train or cfg["n_train"], n_test=n_test,
                      seed=args.seed)
    x_train, x_test = ds.x_train, binarized(ds.x_test, 1)
    binarize = "stochastic" if args.dataset == "digits" else None
    runs = [("VAE (ELBO)", "elbo", None)] + [
        (f"{'IWAE' if args.objective == 'iwae' else 'DReG'} k={k}", args.objective, k)
        for k in args.ks]
    print(f"{args.dataset}: {len(x_train)} training, {len(x_test)} test images of "
          f"{x_train.shape[1]} pixels; {x_train.shape[1]}-{'-'.join(map(str, cfg['hidden']))}"
          f"-{cfg['latent_dim']} VAE, {epochs} epochs of batch {cfg['batch_size']}, Adam "
          f"{cfg['lr']:g} (constant); test log p(x) by IWAE with k = {args.eval_k}", flush=True)
    results = []
    for label, objective, k in runs:
        vae = VAE(latent_dim=cfg["latent_dim"], hidden=cfg["hidden"], activation="relu",
                  seed=args.seed)
        track = ActiveUnits(x_test, max(1, epochs // 30))
        t0 = time.perf_counter()
        vae.fit(x_train, epochs=epochs, batch_size=cfg["batch_size"], lr=cfg["lr"],
                lr_schedule=None, binarize=binarize, objective=objective, k=k, progress=False,
                threads=args.threads, seed=args.seed, callbacks=[track])
        train_s = time.perf_counter() - t0  # with the active-unit counts (~1 %)
        t0 = time.perf_counter()
        ll_x = vae.log_likelihood(x_test, k=args.eval_k, rng=0)  # per test image
        ll = float(ll_x.mean())
        elbo = float(vae.elbo(x_test, n_samples=100, rng=0).mean())
        active, var = active_units(vae, x_test)
        results.append({"label": label, "ll": ll, "ll_x": ll_x, "elbo": elbo, "active": active,
                        "var": var, "train_s": train_s, "model": vae, "track": track})
        print(f"  {label:12s} test log p(x) {ll:8.2f}, ELBO {elbo:8.2f} nats, active units "
              f"{active:2d} of {cfg['latent_dim']}; trained in {train_s:5.1f} s "
              f"(evaluated in {time.perf_counter() - t0:.0f} s)", flush=True)

    base = results[0]
    print(f"\n| model | test log p(x), k={args.eval_k} (gain +- standard error, paired over "
          "the test images) | test ELBO | active units | training time |"
          "\n|---|---|---|---|---|")
    for r in results:
        diff = r["ll_x"] - base["ll_x"]
        gain = "" if r is base else \
            f" ({diff.mean():+.2f} +- {diff.std(ddof=1) / np.sqrt(len(diff)):.2f})"
        print(f"| {r['label']} | {r['ll']:.2f}{gain} | {r['elbo']:.2f} | "
              f"{r['active']} of {cfg['latent_dim']} | {r['train_s']:.0f} s |")

    path = args.out / "iwae.png"
    figure(results, ds.image_shape, args, epochs).savefig(path)
    print(f"\nwrote {path}  (total {time.perf_counter() - t_start:.0f} s)")


def figure(results, image_shape, args, epochs):
    fig = Figure(figsize=(14, 6.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subfigures(2, 1, height_ratios=[2.2, 1])
    ax1, ax3, ax2 = top.subplots(1, 3, width_ratios=[1.2, 1, 1])
    for i, r in enumerate(results):
        v = np.sort(r["var"])[::-1]
        ax1.semilogy(np.arange(1, len(v) + 1), v, "o-", ms=4, color=f"C{i}",
                     label=f"{r['label']}: {r['active']} active")
    ax1.axhline(0.01, color="k", ls="--", lw=1, label="activity threshold 0.01")
    ax1.set(xlabel="latent dimension (sorted)", ylabel="Var_x E[z_j | x]",
            title="posterior-mean variance per latent (test set)")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3, which="both")
    for i, r in enumerate(results):
        ax3.plot(r["track"].epochs, r["track"].counts, "-", color=f"C{i}", label=r["label"])
    ax3.set(xlabel="epoch", ylabel="active units (Var > 0.01)", ylim=(0, None),
            title="active units during training")
    ax3.legend(fontsize=8)
    ax3.grid(alpha=0.3)
    pos = np.arange(len(results))
    for key, name, marker in (("ll", f"log p(x) (IWAE, k={args.eval_k})", "o"),
                              ("elbo", "ELBO", "s")):
        vals = [r[key] for r in results]
        ax2.plot(pos, vals, marker + "-", label=name)
        for p, v in zip(pos, vals, strict=True):
            ax2.annotate(f"{v:.2f}", (p, v), ha="center", va="bottom", fontsize=8,
                         xytext=(0, 4), textcoords="offset points")
    ax2.set_xticks(pos, [r["label"] for r in results], fontsize=9)
    ax2.set_xlim(-0.4, len(results) - 0.6)
    ax2.margins(y=0.15)
    ax2.set(ylabel="nats per test image (higher is better)",
            title=f"test bounds after {epochs} epochs")
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)

    axes = bottom.subplots(1, len(results))
    h, w = image_shape
    for ax, r in zip(np.atleast_1d(axes), results, strict=True):
        imgs = r["model"].sample(24, rng=np.random.default_rng(args.seed))
        grid = np.pad(imgs.reshape(-1, h, w), ((0, 0), (1, 1), (1, 1)), constant_values=0.5)
        grid = grid.reshape(3, 8, h + 2, w + 2).transpose(0, 2, 1, 3).reshape(3 * (h + 2), -1)
        ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"samples: {r['label']}", fontsize=9)
        ax.axis("off")
    return fig


if __name__ == "__main__":
    main()
