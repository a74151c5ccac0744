"""In-painting with a VAE on the sprites: fill the missing half (or a random half of the
pixels) of test images, and compare with filling them with the mean image.

    python examples/inpaint.py [--epochs 10] [--n-iter 50] [--out DIR]

Writes ``inpaint.png``: for each mask, the truth, what the model sees (missing pixels
grey), the in-painted image and the mean-image baseline. Prints MSE and BCE over the
missing pixels for both, and splits the right-half case by how much of the shape shows.
"""

import time

import _common
import numpy as np

from npvae import VAE
from npvae.apps import half_mask, inpaint, inpaint_report, random_mask
from npvae.datasets import load_dataset
from npvae.plot import image_grid


def main(argv=None):
    ap = _common.parser(__doc__, latent_dim=10)
    ap.add_argument("--n-iter", type=int, default=50)
    args = _common.parse(ap, argv)
    t0 = time.perf_counter()

    ds = load_dataset("sprites", n_train=args.n_train, n_test=2000, seed=args.seed)
    vae = VAE(latent_dim=args.latent_dim, hidden=(512,), seed=args.seed)
    vae.fit(ds.x_train, epochs=args.epochs, batch_size=128, lr=2e-3, progress=False,
            threads=args.threads)
    print(f"trained in {time.perf_counter() - t0:.0f} s")
    mean = ds.x_train.mean(axis=0)
    T = ds.x_test
    masks = {"right half": half_mask(ds.image_shape),
             "random 50%": random_mask(T.shape, 0.5, rng=args.seed)}
    print(f"{'mask':12s} {'MSE':>8s} {'baseline':>9s} {'BCE':>8s} {'baseline':>9s}  "
          "(over the missing pixels of 2000 test images)")
    reports = {}
    for name, m in masks.items():
        r = inpaint_report(vae, T, m, mean_image=mean, n_iter=args.n_iter)
        reports[name] = r
        print(f"{name:12s} {r['mse']:8.4f} {r['baseline_mse']:9.4f} {r['bce']:8.4f} "
              f"{r['baseline_bce']:9.4f}")

    # right half, split by the share of the shape's pixels left visible
    half = masks["right half"]
    visible = T[:, ~half].sum(1) / T.sum(1)
    filled = reports["right half"]["filled"]
    one = inpaint(vae, T, half, n_iter=1, init=mean)
    # the average of 16 stochastic chains (z ~ q each round): an estimate of the posterior
    # mean of the missing half, which is what MSE rewards
    avg = np.mean([inpaint(vae, T, half, n_iter=5, init=mean, rng=s) for s in range(16)], 0)
    print(f"right half, by the share of the shape that is visible; MSE of: in-painted "
          f"(n_iter={args.n_iter}) / n_iter=1 / mean of 16 stochastic chains / mean image")
    for lo, hi, what in ((0.0, 0.01, "none of it"), (0.01, 0.5, "under half"),
                         (0.5, 1.01, "half or more"), (0.0, 1.01, "all")):
        s = (visible >= lo) & (visible < hi)
        if s.any():
            e = [float(np.mean((a[s][:, half] - T[s][:, half]) ** 2))
                 for a in (filled, one, avg, np.broadcast_to(mean, T.shape))]
            print(f"  {what:13s} {s.sum():5d} images: " + " / ".join(f"{v:.4f}" for v in e))

    # figure: 10 test images whose shape straddles the middle, then 10 random ones
    pick = np.flatnonzero((visible > 0.2) & (visible < 0.8))[:10]
    rows, labels = [], []
    for name, m in masks.items():
        r = reports[name]
        mm = np.broadcast_to(m, T.shape)[pick]
        seen = T[pick].copy()
        seen[mm] = 0.5
        base = np.where(mm, mean, T[pick])
        rows += [T[pick], seen, r["filled"][pick], base]
        labels += ["truth", f"{name}\nmissing grey", "in-painted", "mean image"]
    image_grid(np.vstack(rows), ds.image_shape, ncols=len(pick), row_labels=labels,
               title=f"in-painting ({args.n_iter} encode/decode rounds)",
               path=args.out / "inpaint.png")
    print(f"wrote {args.out / 'inpaint.png'}  (total {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
