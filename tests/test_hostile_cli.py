"""The command line against damaged run folders, odd paths, faults, signals and a second
training on the same folder: one line and exit 2 (1 for divergence, 128 + signal for a
signal), nothing lost."""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import npvae.cli as cli_mod
import npvae.training.archive_save as ckpt_mod  # the checkpoint writer (archive's save)
from npvae.cli import main, runs
from npvae.training.checkpoint import load_checkpoint
from npvae.training.estimator import VAE
from npvae.training.trainer import TrainingDiverged
from tests import hostile as h
from tests.test_cli import TINY, train_fast
from tests.test_train import KillAt

ONE_EPOCH = [a if a != "2" else "1" for a in TINY]  # TINY with --epochs 1


def one_line(capsys, *words):
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("npvae")]
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def run1(tmp_path_factory):
    out = tmp_path_factory.mktemp("hc") / "run"
    assert main(["train", *ONE_EPOCH, "--no-figures", "--out", str(out)]) == 0
    return out


@pytest.fixture
def run(run1, tmp_path):
    """A fresh copy of a finished one-epoch run (tests edit it)."""
    out = tmp_path / "run"
    out.mkdir()
    for name in ("checkpoint.npz", "config.json", "metrics.jsonl"):
        (out / name).write_bytes((run1 / name).read_bytes())
    return out


def edit_config(run, change):
    path = run / "config.json"
    cfg = json.loads(path.read_text())
    out = change(cfg)
    path.write_text(json.dumps(cfg if out is None else out) if not isinstance(out, str) else out)


COMMANDS = [["info"], ["sample", "--out", "{tmp}/s.png"], ["eval", "-k", "2"],
            ["reconstruct", "--out", "{tmp}/r.png"], ["train", "--no-progress", "--resume"]]
DAMAGE = [
    ("options is a list", lambda c: c.__setitem__("options", [1])),
    ("options.lr a string", lambda c: c["options"].__setitem__("lr", "3e-3")),
    ("options.hidden a number", lambda c: c["options"].__setitem__("hidden", 3.5)),
    ("options.n_test a string", lambda c: c["options"].__setitem__("n_test", "64")),
    ("options.dataset unknown", lambda c: c["options"].__setitem__("dataset", 7)),
    ("options.conditional a string", lambda c: c["options"].__setitem__("conditional", "no")),
    ("dataset.image_shape", lambda c: c["dataset"].__setitem__("image_shape", "32x32")),
    ("dataset.classes", lambda c: c["dataset"].__setitem__("classes", 5)),
    ("dataset a string", lambda c: c.__setitem__("dataset", "sprites")),
    ("result.epochs", lambda c: c["result"].__setitem__("epochs", "1")),
    ("deep", lambda c: '{"options": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    ("not json", lambda c: "{oops"),
    ("not an object", lambda c: "[1, 2]"),
    ("bad utf-8", lambda c: None),
]


@pytest.mark.parametrize("what, change", DAMAGE, ids=[d[0] for d in DAMAGE])
@pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_damaged_config_json(run, tmp_path, capsys, command, what, change):
    if what == "bad utf-8":
        (run / "config.json").write_bytes(b'{"options": "\xff\xfe"}')
    else:
        edit_config(run, change)
    argv = [a.format(tmp=tmp_path) for a in command] + [str(run)]
    assert main(argv) == 2
    one_line(capsys, "config.json")


def test_config_json_that_is_a_fifo(run, capsys):
    os.unlink(run / "config.json")
    os.mkfifo(run / "config.json")
    try:
        exc = h.finishes(lambda: pytest.fail("hung") if main(["info", str(run)]) != 2 else None)
    finally:
        h.unblock_fifo(run / "config.json")
    assert exc is None
    one_line(capsys, "config.json", "not a regular file")


# ----------------------------------------------------------------------------- info's status
def test_info_reports_an_interrupted_run_as_interrupted(tmp_path, capsys):
    out = tmp_path / "r"
    # 4 steps per epoch: a signal at step 4 stops at the end of epoch 1 of 2
    assert main(["train", *TINY, "--no-figures", "--out", str(out)],
                callbacks=[KillAt(4)]) == 130
    capsys.readouterr()
    assert main(["info", "--json", str(out)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["status"] == "interrupted" and res["epochs_trained"] == 1
    # a run killed outright (config.json never updated) is interrupted too
    edit_config(out, lambda c: c.__setitem__("result", None))
    assert main(["info", str(out)]) == 0
    assert "1 of 2 epochs (interrupted)" in capsys.readouterr().out


def test_info_reports_a_finished_run_as_completed(run, capsys):
    assert main(["info", "--json", str(run)]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "completed"


# ----------------------------------------------------------------------------- paths and faults
@pytest.mark.parametrize("out, words", [
    ("", ["--out", "empty"]), ("/proc/npvae-x", ["/proc/npvae-x"]),
    ("/dev/null", ["is a file"]),
])
def test_unusable_out(out, words, capsys):
    assert main(["train", *ONE_EPOCH, "--no-figures", "--out", out]) == 2
    one_line(capsys, *words)


def test_missing_parent_folder_of_an_output_file(run, tmp_path, capsys):
    assert main(["sample", str(run), "--out", str(tmp_path / "no" / "such" / "s.png")]) == 2
    one_line(capsys, "s.png")
    assert main(["sample", str(run), "--npy", "/proc/npvae-x.npy"]) == 2
    one_line(capsys, "npvae-x.npy")
    assert main(["reconstruct", str(run), "--out", str(tmp_path / "nodir" / "r.png")]) == 2
    one_line(capsys, "r.png")


def test_cache_dir_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["train", "--dataset", "mnist", "--cache-dir", str(f), "--no-figures",
                 "--out", str(tmp_path / "r")]) == 2
    one_line(capsys, str(f))


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, capsys, monkeypatch):
    out = tmp_path / "r"
    real, calls = ckpt_mod._write_npz, {"n": 0}

    def write(*args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args)
    monkeypatch.setattr(ckpt_mod, "_write_npz", write)
    assert main(["train", *TINY, "--no-figures", "--out", str(out)]) == 2
    one_line(capsys, "No space left on device", "intact")
    _, config, _ = load_checkpoint(out / "checkpoint.npz")
    assert config["training"]["epoch"] == 1
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]


# ----------------------------------------------------------------------------- divergence
overflows = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # a huge lr overflows


@overflows
def test_divergence_first_seen_in_validation_is_training_diverged(tmp_path):
    x = (np.random.default_rng(0).random((8, 16)) > 0.5).astype(np.float32)
    path = tmp_path / "d.npz"
    with pytest.raises(TrainingDiverged) as info:
        VAE(latent_dim=2, hidden=(8,)).fit(x, validation_data=(x,), epochs=1, batch_size=8,
                                           lr=1e20, progress=False, checkpoint_path=path)
    msg = str(info.value)
    assert "validation" in msg and "no checkpoint had been written yet" in msg
    assert "impute" not in msg and not path.exists()


@overflows
def test_divergence_message_names_the_checkpoint_that_exists(tmp_path):
    x = (np.random.default_rng(0).random((8, 16)) > 0.5).astype(np.float32)
    path = tmp_path / "d.npz"
    kw = {"validation_data": (x,), "batch_size": 8, "progress": False, "checkpoint_path": path}
    VAE(latent_dim=2, hidden=(8,)).fit(x, epochs=1, lr=1e-3, **kw)
    with pytest.raises(TrainingDiverged, match=r"d.npz' \(after epoch 1\) is kept"), \
            pytest.warns(UserWarning, match="different lr"):
        VAE(latent_dim=2, hidden=(8,)).fit(x, epochs=2, lr=1e20, resume=True, **kw)
    assert load_checkpoint(path)[1]["training"]["epoch"] == 1


@overflows
def test_cli_divergence_in_validation_exits_1(tmp_path, capsys):
    data = tmp_path / "d.npz"
    np.savez(data, x=(np.random.default_rng(0).random((10, 16)) > 0.5).astype(np.float32))
    assert main(["train", "--data", str(data), "--hidden", "8", "--latent-dim", "2",
                 "--epochs", "1", "--lr", "1e20", "--no-progress", "--no-figures",
                 "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "diverged" in err and "impute" not in err and "Traceback" not in err
    assert "no checkpoint had been written yet" in err


# ----------------------------------------------------------------------------- signals
def _signal_in_save(monkeypatch, which, sig=signal.SIGTERM):
    """Make the ``which``-th checkpoint save receive ``sig`` while it writes."""
    import npvae.training.trainer as tr_mod

    real, calls = tr_mod.save_checkpoint, {"n": 0}

    def save(*a, **k):
        calls["n"] += 1
        if calls["n"] == which:
            os.kill(os.getpid(), sig)
        return real(*a, **k)
    monkeypatch.setattr(tr_mod, "save_checkpoint", save)
    return calls


def _x():
    return (np.random.default_rng(1).random((64, 6)) > 0.5).astype(np.float32)


def test_signal_during_the_epoch_end_save(tmp_path, monkeypatch):
    kw = {"epochs": 3, "batch_size": 16, "progress": False}
    straight = VAE(latent_dim=2, hidden=(4,)).fit(_x(), **kw)
    path = tmp_path / "c.npz"
    calls = _signal_in_save(monkeypatch, 1)
    m = VAE(latent_dim=2, hidden=(4,)).fit(_x(), checkpoint_path=path, **kw)
    assert m.stop_reason_ == "interrupted" and m.stop_signal_ == signal.SIGTERM
    assert calls["n"] == 1 and len(m.history_) == 1 and "interrupted" not in m.history_[0]
    _, config, _ = load_checkpoint(path)
    assert config["training"]["epoch"] == 1 and config["training"]["step_in_epoch"] == 0
    assert all("interrupted" not in r for r in config["history"])
    monkeypatch.undo()
    resumed = VAE(latent_dim=2, hidden=(4,)).fit(_x(), checkpoint_path=path, resume=True, **kw)
    np.testing.assert_array_equal(resumed.params.data, straight.params.data)
    assert all("interrupted" not in r for r in resumed.history_)


def test_sigterm_during_the_last_save_is_not_ignored(tmp_path, monkeypatch, capsys):
    _signal_in_save(monkeypatch, 2)  # TINY has 2 epochs: the 2nd save is the last
    out = tmp_path / "r"
    assert main(["train", *TINY, "--out", str(out)]) == 143
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err
    assert load_checkpoint(out / "checkpoint.npz")[1]["training"]["epoch"] == 2
    assert not (out / "samples.png").exists()  # stopped: no figures


def test_sigterm_while_drawing_figures(tmp_path, monkeypatch, capsys):
    def figures(*a, **k):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the signal arrives here
        raise AssertionError("SIGTERM was not delivered")

    monkeypatch.setattr(runs, "make_figures", figures)
    guard = signal.signal(signal.SIGTERM, lambda *a: pytest.fail("main let SIGTERM through"))
    try:
        assert main(["train", *ONE_EPOCH, "--out", str(tmp_path / "r")]) == 143
    finally:
        signal.signal(signal.SIGTERM, guard)
    err = capsys.readouterr().err
    assert "drawing the figures" in err and "complete" in err and "Traceback" not in err


@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "aborted"),
                                             (signal.SIGTERM, 143, "terminated")])
def test_signal_during_start_up(monkeypatch, capsys, sig, code, word):
    if signal.getsignal(sig) == signal.SIG_IGN:  # inherited: a shell's background job
        pytest.skip(f"{sig.name} is ignored in this process (inherited: started in the "
                    "background by a shell without job control), so it cannot arrive here")

    def parser():
        os.kill(os.getpid(), sig)
        time.sleep(5)
        raise AssertionError("not delivered")
    monkeypatch.setattr(cli_mod, "build_parser", parser)
    guard = signal.signal(signal.SIGTERM, lambda *a: pytest.fail("main let SIGTERM through"))
    try:
        assert main(["train"]) == code
    finally:
        signal.signal(signal.SIGTERM, guard)
    err = capsys.readouterr().err
    assert word in err and "Traceback" not in err


def test_stale_temporaries_are_cleaned(run, capsys):
    stale = [".checkpoint.npz.abc123.tmp", "config.json.tmp999", "metrics.jsonl.tmp7"]
    for name in stale:
        (run / name).write_bytes(b"half a file")
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress",
                 "--no-figures"]) == 0
    left = set(os.listdir(run))
    assert not left & set(stale), left


# ----------------------------------------------------------------------------- the lock
def test_second_training_on_the_same_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "r"
    out.mkdir()
    holder = subprocess.Popen(  # another process holds the run folder's lock
        [sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], "
         "os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); "
         "print('locked', flush=True); time.sleep(60)", str(out)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["train", *ONE_EPOCH, "--no-figures", "--out", str(out)]) == 2
        one_line(capsys, "another `npvae train`", str(out))
        assert not (out / "checkpoint.npz").exists()
    finally:
        holder.kill()
        holder.wait(30)
    assert main(["train", *ONE_EPOCH, "--no-figures", "--out", str(out)]) == 0


def test_resume_while_the_run_is_training_is_refused(run, capsys):
    with runs.run_lock(str(run)):
        assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 2
    one_line(capsys, "another `npvae train`")
    assert train_fast(run) == 2  # and after it, the folder still holds the finished run
