"""Semi-supervised digits: M2 and M1+M2 (Kingma et al. 2014) against supervised baselines.

    python examples/semi_supervised.py [--labels 50 100] [--draws 5] [--out DIR]

scikit-learn's 8x8 digits (1,797 images, offline): 497 test images, 300 labelled
validation images (they pick each model's epoch, or its L2 penalty), and 1,000 training
images of which ``--labels`` keep their label (the same number of each class, drawn anew
for each of the ``--draws`` draws). For every draw, in the same run:

* supervised: the classifier network of M2 trained on the labelled images alone;
* M1 + LR: multinomial logistic regression on the latent means of a VAE (M1) trained on all
  1,000 training images (one M1 for every draw: it never sees a label);
* M2 on the pixels, with the unlabelled images enumerated over the 10 classes;
* M1 + M2: M2 on M1's latent means, with a Gaussian likelihood.

Prints test accuracy (mean and std over the draws) and writes ``semi_supervised.json`` and,
for the first draw of the largest label count, M2's and M1+M2's class-conditional samples
and analogies (``semi_supervised_{m2,m1m2}_{samples_by_class,analogies}.png``) to ``--out``
(default ``runs/examples`` under the current directory).
"""

import json
import time

import _common
import numpy as np

from npvae import VAE
from npvae.apps.semisupervised import write_figures
from npvae.datasets import load_dataset
from npvae.training.baselines import SoftmaxRegression, fit_classifier
from npvae.training.m1m2 import M1M2
from npvae.training.semisupervised import SemiSupervisedVAE, balanced_labels
from npvae.training.trainer import thread_limits

HIDDEN, LATENT = (256,), 20


def at_best(model):
    """The record of the epoch whose weights the model kept."""
    return model.history_[model.best_epoch_ - 1]


def main(argv=None):
    ap = _common.parser(__doc__, epochs=300, n_train=1000)
    ap.add_argument("--labels", type=int, nargs="+", default=[50, 100])
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--m1-epochs", type=int, default=300)
    ap.add_argument("--baseline-epochs", type=int, default=300)
    ap.add_argument("--weighting", choices=("batch", "dataset"), default="batch")
    ap.add_argument("--alpha", type=float, default=None,
                    help="weight of the cross-entropy (default: 0.1 * 1000 / labels)")
    args = _common.parse(ap, argv)
    t0 = time.perf_counter()

    ds = load_dataset("digits", n_test=497, seed=args.seed)
    perm = np.random.default_rng([args.seed, 1]).permutation(len(ds.x_train))
    xv, yv = ds.x_train[perm[:300]], ds.y_train[perm[:300]]
    tr = perm[300:300 + args.n_train]
    x, y_all = ds.x_train[tr], ds.y_train[tr]
    test = (ds.x_test, ds.y_test)
    fit = dict(epochs=args.epochs, progress=False, weighting=args.weighting)

    with thread_limits(args.threads):
        m1 = VAE(latent_dim=LATENT, hidden=HIDDEN, likelihood="gaussian", variance=0.05,
                 seed=args.seed)
        m1.fit(x, epochs=args.m1_epochs, lr=3e-3, lr_schedule="cosine", progress=False)
        f, fv, ft = m1.transform(x), m1.transform(xv), m1.transform(ds.x_test)
        print(f"M1 trained in {time.perf_counter() - t0:.0f} s on {len(x)} images "
              f"(KL {m1.history_[-1]['train_kl']:.1f} nats)", flush=True)
        results = []
        for n_labels in args.labels:
            for draw in range(args.draws):
                ts = time.perf_counter()
                y = balanced_labels(y_all, n_labels, np.random.default_rng([args.seed, draw]))
                clf = fit_classifier(x, y, 10, hidden=HIDDEN, activation="relu",
                                     validation_data=(xv, yv),
                                     epochs=args.baseline_epochs, seed=args.seed)
                lr = SoftmaxRegression().fit(f, y, 10, validation_data=(fv, yv))
                m2 = SemiSupervisedVAE(10, latent_dim=LATENT, hidden=HIDDEN, alpha=args.alpha,
                                       seed=args.seed)
                m2.fit(x, y, validation_data=(xv, yv), test_data=test, **fit)
                mm = M1M2(m1, SemiSupervisedVAE(10, latent_dim=LATENT, hidden=HIDDEN,
                                                likelihood="gaussian-diag", alpha=args.alpha,
                                                seed=args.seed))
                mm.fit(x, y, fit_m1=False, validation_data=(xv, yv), test_data=test, **fit)
                row = {"labels": n_labels, "draw": draw,
                       "supervised": clf.score(*test), "m1_lr": lr.score(ft, ds.y_test),
                       "m2": m2.score(*test), "m1_m2": mm.score(*test),
                       "m2_epoch": m2.best_epoch_, "m1_m2_epoch": mm.m2_.best_epoch_,
                       "m2_at_best": at_best(m2), "m1_m2_at_best": at_best(mm.m2_),
                       "alpha": m2.alpha_, "seconds": time.perf_counter() - ts}
                results.append(row)
                print(f"{n_labels} labels, draw {draw}: supervised {row['supervised']:.3f}  "
                      f"M1+LR {row['m1_lr']:.3f}  M2 {row['m2']:.3f}  M1+M2 "
                      f"{row['m1_m2']:.3f}  ({row['seconds']:.0f} s)", flush=True)
                if n_labels == max(args.labels) and draw == 0:
                    for name, model in (("m2", m2), ("m1m2", mm)):
                        write_figures(model, ds.x_test, (8, 8), args.out, seed=args.seed,
                                      y_test=ds.y_test,
                                      prefix=f"semi_supervised_{name}_",
                                      title=f"{'M2' if name == 'm2' else 'M1+M2'}, "
                                            f"{n_labels} labels: ")

    print(f"\ntest accuracy on {len(ds.x_test)} digits, mean +- std over {args.draws} label "
          f"draws (weighting={args.weighting}, alpha={args.alpha or '0.1 * 1000 / labels'}):")
    print("| labels | supervised only | M1 + LR | M2 | M1 + M2 |\n|---|---|---|---|---|")
    for n_labels in args.labels:
        rows = [r for r in results if r["labels"] == n_labels]
        cells = [f"{np.mean([r[k] for r in rows]):.3f} +- {np.std([r[k] for r in rows]):.3f}"
                 for k in ("supervised", "m1_lr", "m2", "m1_m2")]
        print(f"| {n_labels} | " + " | ".join(cells) + " |")
    with open(args.out / "semi_supervised.json", "w") as fh:
        json.dump({"args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                  fh, indent=1)
    print(f"took {time.perf_counter() - t0:.0f} s; wrote {args.out}/semi_supervised.json and "
          "the figures")


if __name__ == "__main__":
    main()
