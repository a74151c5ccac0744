"""The `npvae` command line: train writes a complete run folder; sample, reconstruct, eval
and info read it; resume, user data, conditional and 2-D runs; user errors exit 2."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.image import imread

from npvae.cli import main, runs
from npvae.training.estimator import VAE
from tests.test_train import KillAt  # sends a signal mid-run, as Ctrl-C would

TINY = ["--n-train", "256", "--n-test", "64", "--hidden", "32", "--latent-dim", "3",
        "--batch-size", "64", "--epochs", "2", "--no-progress"]  # 4 steps per epoch
FIGURES = ("loss_curves.png", "reconstructions.png", "samples.png", "traversals.png")


def train(out, *extra, callbacks=()):
    return main(["train", *TINY, "--out", str(out), *extra], callbacks=callbacks)


def train_fast(out, *extra, callbacks=()):
    return train(out, "--no-figures", *extra, callbacks=callbacks)


def assert_png(path):
    assert os.path.getsize(path) > 3000, path
    img = imread(path)
    assert img.ndim == 3 and min(img.shape[:2]) > 100 and img[..., :3].std() > 0.05, path


def params(run):
    return VAE.load(os.path.join(run, "checkpoint.npz")).params.data


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert train(out) == 0
    return str(out)


# ----------------------------------------------------------------------------- help
def test_help_via_python_m():
    r = subprocess.run([sys.executable, "-m", "npvae", "--help"], capture_output=True,
                       text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert r.returncode == 0, r.stderr
    for cmd in ("train", "sample", "reconstruct", "eval", "info"):
        assert cmd in r.stdout


def test_help_lists_each_command_once(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("train", "sample", "reconstruct", "eval", "info"):
        assert len([line for line in out.splitlines() if line.split()[:1] == [cmd]]) == 1, cmd


def test_dataset_names_as_python_takes_them(capsys):
    from npvae.cli import build_parser

    for name, canonical in (("Sprites", "sprites"), ("fashion", "fashion-mnist"),
                            ("FASHION_MNIST", "fashion-mnist"), ("digits", "digits")):
        assert build_parser().parse_args(["train", "--dataset", name]).dataset == canonical


def test_unknown_option_points_to_the_commands_help(run, capsys):
    assert main(["sample", run, "--no-progress"]) == 2
    one_error_line(capsys, "npvae sample: error: unrecognized arguments: --no-progress",
                   "`npvae sample --help`")


def test_every_train_option_is_explained(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for opt in ("--dataset", "--data", "--epochs", "--batch-size", "--lr", "--lr-schedule",
                "--beta", "--kl-warmup", "--free-bits", "--samples", "--latent-dim",
                "--hidden", "--activation", "--likelihood", "--early-stopping", "--seed",
                "--threads", "--binarize", "--scale", "--cache-dir", "--out", "--resume",
                "--conditional", "--no-progress", "--quiet"):
        assert opt in out, opt
    assert "default: 24" in out and "(default: 512)" in out
    for cmd in ("sample", "reconstruct", "eval", "info"):
        assert main([cmd, "--help"]) == 0


# ----------------------------------------------------------------------------- train
def test_train_writes_run_folder(run):
    for name in ("checkpoint.npz", "config.json", "metrics.jsonl", *FIGURES):
        assert os.path.isfile(os.path.join(run, name)), name
    for name in FIGURES:
        assert_png(os.path.join(run, name))
    assert not os.path.exists(os.path.join(run, "latent_map.png"))  # 3-D latent space
    lines = open(os.path.join(run, "metrics.jsonl")).read().splitlines()
    recs = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in recs] == [1, 2] and recs[-1]["val_loss"] > 0
    cfg = json.load(open(os.path.join(run, "config.json")))
    assert cfg["options"]["hidden"] == [32] and cfg["options"]["n_train"] == 256
    assert cfg["model"]["latent_dim"] == 3 and cfg["dataset"]["image_shape"] == [32, 32]
    assert cfg["versions"]["npvae"] and cfg["result"]["stop_reason"] == "completed"
    assert cfg["result"]["val_elbo"] == pytest.approx(
        -(recs[-1]["val_recon"] + recs[-1]["val_kl"]))


def test_train_prints_outputs_and_elbo(tmp_path, capsys):
    assert train_fast(tmp_path / "r", "--epochs", "1") == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'r'}" in out and "validation ELBO -" in out
    assert not os.path.exists(tmp_path / "r" / "samples.png")  # --no-figures


def test_default_run_folders_never_collide(tmp_path):
    a, b = runs.new_run_dir(tmp_path, "sprites"), runs.new_run_dir(tmp_path, "sprites")
    assert a != b and os.path.isdir(a) and os.path.isdir(b)
    assert os.path.basename(a).startswith("sprites-20")


def test_quiet_prints_only_the_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", *TINY[:-1], "--epochs", "1", "--quiet", "--no-figures"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.strip().startswith(os.path.join("runs", "sprites-"))
    assert os.path.isfile(os.path.join(out.strip(), "checkpoint.npz"))


# ----------------------------------------------------------------------------- other commands
def test_sample_png_and_npy(run, tmp_path, capsys):
    png, npy = tmp_path / "s.png", tmp_path / "s.npy"
    assert main(["sample", run, "-n", "16", "--out", str(png), "--npy", str(npy)]) == 0
    assert_png(png)
    x = np.load(npy)
    assert x.shape == (16, 32, 32) and 0 <= x.min() and x.max() <= 1
    ckpt = os.path.join(run, "checkpoint.npz")  # a .npz path works too, same seed -> same
    assert main(["sample", ckpt, "-n", "16", "--npy", str(tmp_path / "t.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "t.npy"), x)


def test_reconstruct(run, tmp_path):
    out = tmp_path / "r.png"
    assert main(["reconstruct", run, "-n", "6", "--out", str(out)]) == 0
    assert_png(out)


def test_eval_json(run, capsys):
    assert main(["eval", run, "-k", "10", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n_test"] == 64 and res["k"] == 10 and 0 <= res["active_units"] <= 3
    assert res["elbo"] == pytest.approx(-(res["recon"] + res["kl"]))
    assert np.isfinite(res["log_likelihood"]) and res["log_likelihood"] > res["elbo"] - 5
    assert main(["eval", run, "-k", "5"]) == 0
    assert "active units" in capsys.readouterr().out


def test_eval_ais(run, capsys, monkeypatch):
    """--ais adds AIS log p(x), ELBO(q*) and both gaps, to the text and to --json. (q*'s
    convergence is tested in test_inference_qstar.py; here its steps are capped.)"""
    import functools

    from npvae.inference import qstar

    monkeypatch.setattr(qstar, "optimise_qstar",
                        functools.partial(qstar.optimise_qstar, max_steps=150))
    args = ["eval", run, "-k", "5", "--ais", "--ais-steps", "20", "--ais-chains", "4",
            "--ais-examples", "6"]
    assert main([*args, "--json"]) == 0
    a = json.loads(capsys.readouterr().out)["ais"]
    assert a["examples"] == 6 and a["steps"] == 20 and a["chains"] == 4
    assert a["amortisation_gap"] == pytest.approx(a["elbo_qstar"] - a["elbo"])
    assert a["approximation_gap"] == pytest.approx(a["log_px"] - a["elbo_qstar"], abs=1e-9)
    assert a["elbo"] < a["log_px"] and np.isfinite(a["stderr"])
    assert set(a["seconds"]) == {"elbo", "qstar", "ais"}
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "amortisation gap" in out and "log p(x) AIS" in out
    assert main(["eval", run, "--ais-steps", "1"]) == 2


def test_eval_elbo_is_the_one_training_printed(run, capsys):
    # the same noise (metrics.EVAL_SEED) in training's validation, npvae eval and VAE.score
    final = json.loads(open(os.path.join(run, "metrics.jsonl")).readlines()[-1])
    assert main(["eval", run, "-k", "2", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["elbo"] == pytest.approx(-(final["val_recon"] + final["val_kl"]), rel=1e-9)
    assert res["recon"] == pytest.approx(final["val_recon"], rel=1e-9)
    opts = json.load(open(os.path.join(run, "config.json")))["options"]
    model = VAE.load(os.path.join(run, "checkpoint.npz"))
    assert model.score(runs.load_data(opts)[1]) == pytest.approx(res["elbo"], rel=1e-9)
    assert main(["eval", run, "-k", "2", "--json", "--seed", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["recon"] != res["recon"]


def test_info(run, capsys):
    assert main(["info", run]) == 0
    out = capsys.readouterr().out
    assert "parameters" in out and "1024 -> 32 -> 2x3" in out and "sprites" in out
    assert main(["info", run, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["parameters"] == params(run).size and res["epochs_trained"] == 2


# ----------------------------------------------------------------------------- resume
def test_sigterm_exits_143_with_a_checkpoint(tmp_path, capsys):
    out = tmp_path / "term"
    assert train_fast(out, callbacks=[KillAt(2, signal.SIGTERM)]) == 128 + signal.SIGTERM
    assert f"npvae train --resume {out}" in capsys.readouterr().err
    assert os.path.isfile(out / "checkpoint.npz")


def test_interrupt_then_resume_equals_straight_run(run, tmp_path, capsys):
    out = tmp_path / "cut"
    assert train_fast(out, callbacks=[KillAt(3)]) == 130
    err = capsys.readouterr().err
    assert f"npvae train --resume {out}" in err and os.path.isfile(out / "checkpoint.npz")
    assert main(["train", "--resume", str(out), "--no-progress", "--no-figures"]) == 0
    np.testing.assert_array_equal(params(out), params(run))
    assert len(open(out / "metrics.jsonl").read().splitlines()) == 2
    # a finished run resumes to nothing new; a larger --epochs trains on
    assert main(["train", "--resume", str(out / "checkpoint.npz"), "--no-progress",
                 "--no-figures"]) == 0
    np.testing.assert_array_equal(params(out), params(run))
    assert main(["train", "--resume", str(out), "--epochs", "3", "--no-progress"]) == 0
    assert len(open(out / "metrics.jsonl").read().splitlines()) == 3
    assert_png(out / "samples.png")


# ----------------------------------------------------------------------------- data, 2-D, cond
def test_user_npz_without_labels(tmp_path):
    rng = np.random.default_rng(0)
    x = (rng.random((120, 8, 8)) < 0.3).astype(np.uint8) * 255
    np.savez(tmp_path / "d.npz", x=x)
    assert train(tmp_path / "r", "--data", str(tmp_path / "d.npz"), "--n-train", "100",
                 "--n-test", "20") == 0
    cfg = json.load(open(tmp_path / "r" / "config.json"))
    assert cfg["dataset"]["name"] == "file" and cfg["dataset"]["image_shape"] == [8, 8]
    assert_png(tmp_path / "r" / "samples.png")
    assert main(["eval", str(tmp_path / "r"), "-k", "2", "--json"]) == 0


def test_conditional_2d_run_with_user_labels(tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 150)
    x = np.zeros((150, 10, 10), np.float32)
    for k in range(3):  # class k lights up band k
        x[y == k, 3 * k:3 * k + 3] = 1
    np.savez(tmp_path / "d.npz", x=x, y=y)
    out = tmp_path / "r"
    assert train(out, "--data", str(tmp_path / "d.npz"), "--n-train", "120", "--n-test", "30",
                 "--latent-dim", "2", "--conditional") == 0
    for name in (*FIGURES, "samples_by_class.png", "latent_map.png", "manifold.png"):
        assert_png(out / name)
    capsys.readouterr()
    assert main(["sample", str(out), "-n", "4", "--label", "2", "--npy",
                 str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (4, 10, 10)
    assert main(["sample", str(out), "--label", "7", "--out", str(tmp_path / "s.png")]) == 2
    assert "unknown --label '7'" in capsys.readouterr().err


def test_sprites_2d_latent_map_and_manifold(tmp_path):
    out = tmp_path / "r"
    assert train(out, "--latent-dim", "2", "--epochs", "1", "--conditional") == 0
    for name in ("latent_map.png", "manifold.png", "samples_by_class.png"):
        assert_png(out / name)
    cfg = json.load(open(out / "config.json"))
    assert cfg["dataset"]["classes"] == ["square", "ellipse", "heart"]
    assert main(["sample", str(out), "-n", "8", "--label", "heart",
                 "--out", str(tmp_path / "h.png")]) == 0


# ----------------------------------------------------------------------------- errors
def one_error_line(capsys, *words):
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.count("error:") == 1, err
    err = err.splitlines()[-1]
    for w in words:
        assert w in err, (w, err)


def test_missing_checkpoint(tmp_path, capsys):
    assert main(["sample", str(tmp_path / "nope.npz")]) == 2
    one_error_line(capsys, "no such checkpoint", "nope.npz")
    assert main(["info", str(tmp_path)]) == 2
    one_error_line(capsys, "without checkpoint.npz")


def test_damaged_checkpoint(run, tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(open(os.path.join(run, "checkpoint.npz"), "rb").read()[:5000])
    assert main(["eval", str(bad)]) == 2
    one_error_line(capsys, "bad.npz", "unusable")


@pytest.mark.parametrize("argv, words", [
    (["train", "--dataset", "imagenet"], ["invalid choice", "imagenet"]),
    (["train", "--hidden", "512,x"], ["--hidden", "512,x"]),
    (["train", "--lr", "-1"], ["--lr"]),
    (["train", "--data", "/no/such/file.npz"], ["no such data file"]),
    (["train", "--dataset", "digits", "--data", "x.npz"], ["not both"]),
    (["train", "--resume", "/no/such/run"], ["no such checkpoint"]),
])
def test_bad_options_exit_2(argv, words, capsys):
    assert main(argv) == 2
    one_error_line(capsys, *words)


def test_resume_with_another_architecture(run, capsys):
    assert main(["train", "--resume", run, "--hidden", "16", "--no-progress"]) == 2
    one_error_line(capsys, "different model", "encoder_hidden")


def test_label_on_unconditional_model(run, capsys):
    assert main(["sample", run, "--label", "1"]) == 2
    one_error_line(capsys, "--label needs a conditional model")


def test_out_refuses_an_existing_run(run, capsys):
    assert train_fast(run) == 2
    one_error_line(capsys, "already holds a run", "--resume")


def test_diverged_run_exits_1_and_keeps_the_checkpoint(tmp_path, capsys):
    out = tmp_path / "r"
    assert train_fast(out, "--epochs", "1") == 0
    good = params(out)
    assert main(["train", "--resume", str(out), "--epochs", "2", "--lr", "1e30",
                 "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "diverged" in err and "--lr" in err and "is kept" in err and "Traceback" not in err
    np.testing.assert_array_equal(params(out), good)
    assert json.load(open(out / "config.json"))["result"]["stop_reason"] == "diverged"


# ----------------------------------------------------------------------------- objectives
def test_train_on_the_iwae_bound_then_interrupt_and_resume(tmp_path, capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--objective" in out and "--k K" in out
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    extra = ("--objective", "iwae-dreg", "--k", "3")
    assert train_fast(straight, *extra) == 0
    assert "validation iwae-dreg bound (k=3) -" in capsys.readouterr().out
    settings = json.load(open(straight / "config.json"))["options"]
    assert (settings["objective"], settings["k"]) == ("iwae-dreg", 3)
    assert train_fast(cut, *extra, callbacks=[KillAt(5)]) == 130
    assert main(["train", "--resume", str(cut), "--no-progress", "--no-figures"]) == 0
    np.testing.assert_array_equal(params(cut), params(straight))
    assert main(["info", str(cut)]) == 0
    assert "objective iwae-dreg k=3" in capsys.readouterr().out


@pytest.mark.parametrize("extra, words", [
    (["--k", "5"], ["--k 5", "--objective iwae", "--samples"]),
    (["--objective", "iwae", "--free-bits", "0.5"], ["--free-bits", "drop"]),
    (["--objective", "iwea"], ["invalid choice", "iwea"]),
])
def test_bad_objective_options_exit_2_before_any_work(extra, words, tmp_path, capsys):
    assert train_fast(tmp_path / "r", *extra) == 2
    one_error_line(capsys, *words)
    assert not os.path.exists(tmp_path / "r")
