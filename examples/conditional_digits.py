"""Conditional VAE on scikit-learn's digits: how its samples come to obey the label.

    python examples/conditional_digits.py [--epochs 30] [--lr 1e-3] [--schedule none]
                                          [--latent-dim 20] [--hidden 400] [--out DIR]

Needs scikit-learn (``pip install "npvae[digits]"``). Trains ``VAE(cond_dim=10)`` with
``y = one_hot(digit)`` and prints, after every epoch:

* the share of class-conditional samples (z ~ N(0, I), decoded with y = k) that a 1-NN
  classifier trained on the real training images recognises as digit k;
* the share of test images whose posterior mean, decoded with the next digit's y, is
  recognised as that digit (does the decoder follow y or z?);
* how much the posterior means still tell the digit (1-NN of test means among training
  means), and the KL.

The defaults are the model and the training of ``VAE(cond_dim=10).fit`` as they were before
``fit`` took ``npvae train``'s defaults: a 20-D latent space, 400 hidden units, Adam at 1e-3
without a schedule. Writes ``conditional_digits.png``.
"""

import time

import _common
import numpy as np

from npvae import VAE
from npvae.apps import CenteredKNN, class_samples, one_hot
from npvae.datasets import load_dataset
from npvae.plot import image_grid


def main(argv=None):
    ap = _common.parser(__doc__, epochs=30, n_train=1500, latent_dim=20)
    ap.add_argument("--hidden", type=int, default=400)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--schedule", choices=("none", "cosine"), default="none")
    args = _common.parse(ap, argv)
    ds = load_dataset("digits", n_train=args.n_train)
    X, y, Xt, yt = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    Y, Yt = one_hot(y, 10), one_hot(yt, 10)
    clf = CenteredKNN(ds.image_shape).fit(X, y)
    print(f"digit classifier (1-NN) on {len(Xt)} real test images: {clf.score(Xt, yt):.3f}")
    print("epoch  KL     samples recognised as asked   z -> next y recognised   "
          "digit from z (1-NN)")

    def trace(model, rec):
        imgs, asked = class_samples(model, 100, rng=args.seed, shared_z=False)
        mu_tr, mu_te = model.encode(X, Y)[0], model.encode(Xt, Yt)[0]
        nearest = ((mu_te[:, None] - mu_tr[None]) ** 2).sum(-1).argmin(1)
        other = (yt + 1) % 10
        print(f"{rec['epoch']:5d}  {rec['train_kl']:5.2f}  "
              f"{np.mean(clf.predict(imgs) == asked):27.3f}   "
              f"{clf.score(model.decode(mu_te, one_hot(other, 10)), other):22.3f}   "
              f"{np.mean(y[nearest] == yt):18.3f}", flush=True)

    t0 = time.perf_counter()
    cvae = VAE(latent_dim=args.latent_dim, hidden=(args.hidden,), cond_dim=10, seed=args.seed)
    cvae.fit(X, Y, epochs=args.epochs, lr=args.lr, batch_size=128, progress=False,
             lr_schedule=None if args.schedule == "none" else args.schedule,
             threads=args.threads, callbacks=[trace])
    imgs, _ = class_samples(cvae, 10, rng=args.seed)  # the same 10 latents for each digit
    path = args.out / "conditional_digits.png"
    image_grid(imgs, ds.image_shape, ncols=10, row_labels=[str(k) for k in range(10)],
               title="CVAE samples: one row per y, the same z in each column", path=path)
    print(f"trained and traced in {time.perf_counter() - t0:.0f} s; wrote {path}")


if __name__ == "__main__":
    main()
