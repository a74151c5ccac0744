"""``npvae train --semi-supervised``: M2 from a few labels, beside the same classifier trained
on those labels alone.

The training rows are split once, with a seed that never changes (so runs compare): a
labelled validation set (``--n-val``, default 10 % of the rows, at most 5000) that picks the
epoch, and the rest, of which ``--labels`` keep their label (balanced over the classes, drawn
with ``--seed``). The test split is only reported: its accuracy is printed in the progress
bar and written to ``metrics.jsonl`` every epoch, and the run ends with the test accuracy of
the epoch with the best validation accuracy.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from npvae.cli import runs
from npvae.cli.runs import CHECKPOINT, CONFIG, METRICS, CLIError

__all__ = ["train_m2"]

# VAE options that have no meaning for M2
_VAE_ONLY = ("beta", "kl_warmup", "free_bits", "conditional", "lr_schedule", "objective", "k")


def _options(args):
    from npvae.cli.common import _explicit
    from npvae.cli.parser import M2_DEFAULTS
    from npvae.cli.training import _train_options

    if not args.semi_supervised:
        raise CLIError("--labels, --alpha and --n-val belong to --semi-supervised; add it, "
                       "or drop them to train a VAE")
    if args.resume is not None:
        raise CLIError("--resume does not apply to --semi-supervised runs (they are not "
                       "resumable yet); start a new run")
    given = _explicit(args)
    bad = [k for k in _VAE_ONLY if k in given]
    if bad:
        raise CLIError(f"--{bad[0].replace('_', '-')} is a VAE option with no meaning for "
                       "--semi-supervised; drop it")
    if given.get("binarize") == "stochastic":
        raise CLIError("--semi-supervised takes --binarize none or threshold, not stochastic")
    opts, _, _ = _train_options(args)
    for key, value in M2_DEFAULTS.items():
        opts[key] = given.get(key, value)
    return opts


def _split(ds, opts):
    """``(x, y_semi, x_val, y_val, n_classes, names)``."""
    from npvae.training.semisupervised import balanced_labels

    y = ds.y_train
    if y is None or y.ndim != 1 or y.dtype.kind not in "iu" or ds.y_test is None:
        raise CLIError("--semi-supervised needs one integer class label per row, for the "
                       "test rows too; for a --data .npz file, save them as 'y' beside 'x'")
    k, names = runs.class_info(ds)
    n = len(ds.x_train)
    n_val = opts["n_val"] or min(max(1, round(0.1 * n)), 5000)
    if n_val >= n:
        raise CLIError(f"--n-val {n_val} leaves no training rows of the {n}; pass a smaller one")
    perm = np.random.default_rng([runs.DATA_SEED, 0x55]).permutation(n)
    val, tr = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    try:
        y_semi = balanced_labels(y[tr], opts["labels"], np.random.default_rng(opts["seed"]))
    except ValueError as exc:
        raise CLIError(f"--labels {opts['labels']}: {exc}") from exc
    return ds.x_train[tr], y_semi, ds.x_train[val], y[val], k, names


def train_m2(args, callbacks, stack):
    """The command; ``stack`` holds the run folder's lock."""
    from npvae.apps.semisupervised import write_figures
    from npvae.cli.common import _plain_warnings, _say
    from npvae.cli.training import _prepare_run_dir
    from npvae.training.baselines import fit_classifier
    from npvae.training.semisupervised import SemiSupervisedVAE
    from npvae.training.trainer import TrainingDiverged

    opts = _options(args)
    progress = not (args.quiet or args.no_progress)
    _say(args, f"loading {opts['data'] or opts['dataset']} ...")
    ds, x_test = runs.load_data({**opts, "download_timeout": args.download_timeout},
                                progress=progress)
    x, y, xv, yv, k, names = _split(ds, opts)
    try:
        model = SemiSupervisedVAE(k, x.shape[1], opts["latent_dim"], opts["hidden"],
                                  activation=opts["activation"], likelihood=opts["likelihood"],
                                  n_samples=opts["samples"], alpha=opts["alpha"],
                                  seed=opts["seed"])
        model._model().check_memory(x.shape[1])  # before the weights are built
        model.build(x.shape[1])
    except (TypeError, ValueError) as exc:
        raise CLIError(" ".join(str(exc).split())) from exc
    run_dir = _prepare_run_dir(args, opts, stack)
    ckpt = os.path.join(run_dir, CHECKPOINT)
    config = {"command": "npvae train --semi-supervised", "options": opts,
              "model": {**model.config(), "backend": model.backend},
              "dataset": {**runs.dataset_info(ds, x_test, (k, names)), "n_val": len(xv)},
              "versions": runs.versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "result": None}
    runs.write_json(os.path.join(run_dir, CONFIG), config)
    n_lab = int((y >= 0).sum())
    _say(args, f"training {model!r}\n  on {len(x)} {ds.name} examples, {n_lab} of them "
               f"labelled ({n_lab // k} per class); {len(xv)} labelled for validation, "
               f"{len(x_test)} for the test; run folder {run_dir}")
    t0 = time.perf_counter()
    try:
        with _plain_warnings():
            model.fit(x, y, validation_data=(xv, yv), test_data=(x_test, ds.y_test),
                      epochs=opts["epochs"], batch_size=opts["batch_size"], lr=opts["lr"],
                      clip_norm=opts["clip_norm"], seed=opts["seed"],
                      early_stopping_patience=opts["early_stopping"],
                      threads=opts["threads"], progress=progress,
                      callbacks=[cb for cb in callbacks if callable(cb)])
    except TrainingDiverged as exc:
        print(f"npvae train: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    except ValueError as exc:
        raise CLIError(" ".join(str(exc).split())) from exc
    model.save(ckpt)
    runs.write_metrics(os.path.join(run_dir, METRICS), model.history_)
    best = model.history_[model.best_epoch_ - 1]
    _say(args, "training the same classifier on the labels alone ...")
    base = fit_classifier(x, y, k, hidden=model.classifier_hidden,
                          activation=model.activation, validation_data=(xv, yv),
                          epochs=max(300, opts["epochs"]), lr=opts["lr"], seed=opts["seed"])
    config["result"] = {"best_epoch": model.best_epoch_, "val_accuracy": best["val_accuracy"],
                        "test_accuracy": best["test_accuracy"], "alpha": model.alpha_,
                        "baseline_test_accuracy": base.score(x_test, ds.y_test),
                        "baseline_best_epoch": base.best_epoch_,
                        "seconds": time.perf_counter() - t0}
    shape = runs.image_shape_for(x.shape[1], ds.image_shape)
    figs = []
    if not args.no_figures and shape is not None:
        _say(args, "drawing figures ...")
        figs = write_figures(model, x_test, shape, run_dir, y_test=ds.y_test,
                             label_names=names, seed=opts["seed"])
    config["result"]["figures"] = figs
    runs.write_json(os.path.join(run_dir, CONFIG), config)
    if args.quiet:
        print(run_dir)
        return 0
    r = config["result"]
    print(f"wrote {run_dir}{os.sep}: {', '.join([CHECKPOINT, CONFIG, METRICS, *figs])}")
    print(f"test accuracy {r['test_accuracy']:.4f} at epoch {r['best_epoch']} (best "
          f"validation accuracy {r['val_accuracy']:.4f}); the same classifier trained on the "
          f"{n_lab} labels alone: {r['baseline_test_accuracy']:.4f}; took "
          f"{time.perf_counter() - t0:.0f} s")
    print("load it with: from npvae import SemiSupervisedVAE; "
          f"SemiSupervisedVAE.load({ckpt!r})")
    return 0
