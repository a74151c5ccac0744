"""The ``npvae train`` command: its options (a new run, or a resumed one), the run folder
and its lock, the model, the fit, and the run's files and report."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

from npvae.cli import runs
from npvae.cli.common import _explicit, _plain_warnings, _say
from npvae.cli.runs import CHECKPOINT, CONFIG, METRICS, CLIError

__all__ = ["train"]


def _train_options(args):
    """``(options, run_dir or None, resuming)`` from the arguments (and a resumed run)."""
    from npvae.cli.parser import TRAIN_DEFAULTS

    given = _explicit(args)
    if args.resume is None:
        opts = {**TRAIN_DEFAULTS, **given}
        if opts["data"] is not None:
            if given.get("dataset") not in (None, "file"):
                raise CLIError("pass either --dataset or --data FILE, not both")
            opts["dataset"] = "file"
            if not os.path.exists(opts["data"]):
                raise CLIError(f"no such data file: {opts['data']}; pass an existing .npy or "
                               ".npz file to --data")
            if not os.path.isfile(opts["data"]):
                raise CLIError(f"--data {opts['data']} is not a regular file (a folder, FIFO "
                               "or device); pass a .npy or .npz file")
        return opts, None, False
    if args.out is not None:
        raise CLIError("--resume continues the run in its own folder; drop --out")
    ckpt, run_dir = runs.resolve_checkpoint(args.resume)
    saved = runs.read_run_config(run_dir).get("options")
    if run_dir is None or not saved or os.path.basename(ckpt) != CHECKPOINT:
        raise CLIError(f"{args.resume} is not a run folder written by `npvae train` (it needs "
                       f"{CONFIG} and {CHECKPOINT}); resume other checkpoints from Python "
                       "with VAE.fit(..., checkpoint_path=..., resume=True)")
    for key in ("dataset", "data", "conditional"):
        if key in given and given[key] != saved.get(key):
            raise CLIError(f"--{key.replace('_', '-')} cannot change when resuming (the run "
                           f"used {saved.get(key)!r}); start a new run instead")
    return {**TRAIN_DEFAULTS, **saved, **given}, run_dir, True


def _check_out(out):
    if out is None:
        return
    if not out.strip():
        raise CLIError("--out needs a folder name, got an empty string")
    if os.path.exists(out) and not os.path.isdir(out):
        raise CLIError(f"--out {out} is a file; pass a folder")


def _prepare_run_dir(args, opts, stack):
    """Create the run folder (or take the resumed one) and hold its lock in ``stack``."""
    out = runs.new_run_dir("runs", opts["dataset"]) if args.out is None else args.out
    os.makedirs(out, exist_ok=True)
    stack.enter_context(runs.run_lock(out))
    if args.out is not None and os.path.exists(os.path.join(out, CHECKPOINT)):
        raise CLIError(f"{out} already holds a run; continue it with `npvae train --resume "
                       f"{out}` or pass another --out")
    return out


def _build_model(opts, input_dim, cond_dim, rows):
    from npvae.core.model import VAEModel
    from npvae.training.estimator import VAE
    try:
        model = VAE(input_dim=input_dim, latent_dim=opts["latent_dim"], hidden=opts["hidden"],
                    activation=opts["activation"], likelihood=opts["likelihood"],
                    beta=opts["beta"], n_samples=opts["samples"], free_bits=opts["free_bits"],
                    cond_dim=cond_dim, seed=opts["seed"])
        core = VAEModel(**{**model.get_params(), "input_dim": None})  # validates, builds nothing
        core.check_memory(input_dim)  # before the weights are built
        core.check_memory(input_dim, min(opts["batch_size"], rows))
        return model.build(input_dim)
    except (TypeError, ValueError) as exc:
        raise CLIError(" ".join(str(exc).split())) from exc


def _objective(opts):
    """The run's ``k`` (1 for the ELBO), checked before any data is loaded."""
    from npvae.core.objectives import check_objective

    if opts["objective"] == "elbo":
        if opts["k"] not in (None, 1):
            raise CLIError(f"--k {opts['k']} is the sample count of --objective iwae or "
                           "iwae-dreg; the ELBO draws --samples per example instead")
    elif opts["free_bits"]:
        raise CLIError(f"--free-bits holds the ELBO's closed-form KL per dimension; "
                       f"--objective {opts['objective']} has none: drop --free-bits")
    return check_objective(opts["objective"], opts["k"])[1]


def train(args, callbacks=()):
    with contextlib.ExitStack() as stack:  # holds the run folder's lock (rank 0's)
        return _train(args, callbacks, stack)


def _train(args, callbacks, stack):
    from npvae.cli import parallel
    from npvae.training.distributed import RanksDiverged
    from npvae.training.trainer import TrainingDiverged

    _check_out(args.out)
    if args.semi_supervised or args.labels or args.alpha is not None or args.n_val:
        from npvae.cli.semisupervised import train_m2
        if parallel.data_parallel("train") is not None:
            raise CLIError("--semi-supervised does not run data-parallel; start it without "
                           "mpiexec")
        return train_m2(args, callbacks, stack)
    dp = parallel.data_parallel("train")  # None unless started by mpiexec -n P, P > 1
    root = dp is None or dp.is_root
    if not root:  # rank 0 prints and writes for the whole job
        args.quiet = args.no_figures = True
    opts, run_dir, resuming = parallel.from_root(dp, lambda: _train_options(args))
    k = _objective(opts)
    if resuming and root:
        stack.enter_context(runs.run_lock(run_dir))
    quiet, progress = args.quiet, not (args.quiet or args.no_progress)
    source = opts["data"] or opts["dataset"]
    _say(args, f"loading {source} ...")
    data_opts = {**opts, "download_timeout": args.download_timeout}
    ds, x_test = parallel.root_first(dp, lambda: runs.load_data(data_opts, progress=progress))
    classes = runs.class_info(ds) if opts["conditional"] else None
    cond = classes[0] if classes else 0
    y_train = runs.one_hot(ds.y_train, cond) if classes else None
    y_test = runs.one_hot(ds.y_test, cond) if classes else None
    model = _build_model(opts, ds.x_train.shape[1], cond, len(ds.x_train))
    if run_dir is None:
        run_dir = parallel.from_root(dp, lambda: _prepare_run_dir(args, opts, stack))
    ckpt = os.path.join(run_dir, CHECKPOINT)
    config = {"command": "npvae train", "options": opts,
              "model": {**model.config(), "backend": model.backend},
              "dataset": runs.dataset_info(ds, x_test, classes), "versions": runs.versions(),
              "mpi_processes": 1 if dp is None else dp.size,
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "result": None}
    if resuming and root:  # config.json is rewritten once the resumed fit accepted the options
        config["created"] = runs.read_run_config(run_dir).get("created", config["created"])
    elif root:
        runs.write_json(os.path.join(run_dir, CONFIG), config)
    _say(args, f"training {model!r}\n  on {len(ds.x_train)} {ds.name} examples "
               f"({len(x_test)} for validation); run folder {run_dir}")
    if dp is not None:
        _say(args, f"  data-parallel on {dp.size} MPI processes: each takes 1/{dp.size} of "
                   f"every batch of {opts['batch_size']}")
    t0 = time.perf_counter()
    status, error, trained = 0, None, []
    callbacks = [*callbacks, lambda m, rec: trained.append(rec["epoch"])]
    try:
        with _plain_warnings():
            model.fit(ds.x_train, y_train, validation_data=(x_test, y_test),
                      epochs=opts["epochs"], batch_size=opts["batch_size"], lr=opts["lr"],
                      lr_schedule=None if opts["lr_schedule"] == "none" else opts["lr_schedule"],
                      kl_warmup_epochs=opts["kl_warmup"], clip_norm=opts["clip_norm"],
                      early_stopping_patience=opts["early_stopping"], seed=opts["seed"],
                      threads=opts["threads"],
                      binarize="stochastic" if opts["binarize"] == "stochastic" else None,
                      checkpoint_path=ckpt, resume=resuming, progress=progress,
                      callbacks=callbacks, objective=opts["objective"], k=opts["k"], comm=dp)
    except TrainingDiverged as exc:
        status, error = 1, " ".join(str(exc).split())
    except RanksDiverged as exc:  # raised on every rank alike
        if root:
            print(f"npvae train: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    except ValueError as exc:  # bad settings, or a checkpoint that does not fit them
        raise CLIError(" ".join(str(exc).split())) from exc
    if not root:  # rank 0 writes the metrics, figures and config, and reports
        interrupted = model.stop_reason_ == "interrupted"
        return status or (128 + int(model.stop_signal_ or signal.SIGINT) if interrupted else 0)
    history = getattr(model, "history_", [])
    runs.write_metrics(os.path.join(run_dir, METRICS), history)
    stop = "diverged" if status else model.stop_reason_
    rec, elbo = runs.final_elbo(history, getattr(model, "best_epoch_", None))
    config["result"] = {"stop_reason": stop, "epochs": sum(not r.get("interrupted")
                                                          for r in history),
                        "best_epoch": getattr(model, "best_epoch_", None),
                        "val_elbo": elbo, "val_recon": rec and rec["val_recon"],
                        "val_kl": rec and rec["val_kl"],
                        "seconds": sum(r.get("seconds", 0.0) for r in history)}
    if status:
        runs.write_json(os.path.join(run_dir, CONFIG), config)
        kept = (f"the last good checkpoint {ckpt} is kept" if os.path.exists(ckpt)
                else "no checkpoint had been written yet")
        print(f"npvae train: error: {error}. Try a smaller --lr (now {opts['lr']:g}) or "
              f"--clip-norm 10; {kept}", file=sys.stderr)
        return status
    if stop == "interrupted":
        config["result"]["seconds"] = time.perf_counter() - t0
        runs.write_json(os.path.join(run_dir, CONFIG), config)
        print(f"interrupted: checkpoint saved to {ckpt}\nresume with: npvae train --resume "
              f"{run_dir}", file=sys.stderr)
        return 128 + int(model.stop_signal_ or signal.SIGINT)  # the shell's convention
    if resuming and not trained:
        _say(args, f"nothing to train: the run already did {len(history)} epochs "
                   f"({stop}); pass a larger --epochs to train on")
    figs = []
    if not args.no_figures:
        _say(args, "drawing figures ...")
        try:
            figs = runs.make_figures(
                run_dir, model, history, x_test,
                ds.y_test if ds.y_test is not None and ds.y_test.ndim == 1 else None,
                image_shape=ds.image_shape, classes=classes, label_names=ds.label_names,
                seed=opts["seed"])
        except KeyboardInterrupt as exc:
            runs.write_json(os.path.join(run_dir, CONFIG), config)
            print(f"interrupted while drawing the figures; the checkpoint {ckpt} is complete. "
                  f"Redraw them with: npvae train --resume {run_dir}", file=sys.stderr)
            return 128 + getattr(exc, "signum", signal.SIGINT)
    config["result"]["figures"] = figs
    runs.write_json(os.path.join(run_dir, CONFIG), config)
    if quiet:
        print(run_dir)
        return 0
    files = ", ".join([CHECKPOINT, CONFIG, METRICS, *figs])
    print(f"wrote {run_dir}{os.sep}: {files}")
    if stop == "early_stopping":
        print(f"early stopping after epoch {history[-1]['epoch']}; kept the weights of "
              f"epoch {model.best_epoch_}")
    if elbo is not None:
        print(f"validation ELBO {elbo:.2f} nats (recon {rec['val_recon']:.2f}, KL "
              f"{rec['val_kl']:.2f}) at epoch {rec['epoch']}; took "
              f"{time.perf_counter() - t0:.0f} s")
        if opts["objective"] != "elbo":
            print(f"validation {opts['objective']} bound (k={k}) "
                  f"{-rec['val_loss']:.2f} nats")
    print(f"next: npvae sample {run_dir}   npvae eval {run_dir}")
    return 0
