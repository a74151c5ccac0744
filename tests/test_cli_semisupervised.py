"""`npvae train --semi-supervised`: the run folder (M2 checkpoint, metrics with the test
accuracy of every epoch, config with the accuracy at the best validation epoch and the
labels-only baseline, figures), the balanced label draw, and its user errors."""

import json
import os

import numpy as np
import pytest

from npvae import SemiSupervisedVAE
from npvae.cli import main
from tests.test_cli import assert_png, one_error_line

pytest.importorskip("sklearn")  # the digits
TINY = ["--dataset", "digits", "--n-train", "300", "--n-test", "60", "--labels", "20",
        "--n-val", "50", "--hidden", "16", "--latent-dim", "2", "--epochs", "2",
        "--no-progress"]


def test_semi_supervised_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--semi-supervised", *TINY, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "20 labels alone" in printed
    metrics = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert all(0 <= m["test_accuracy"] <= 1 and 0 <= m["val_accuracy"] <= 1 for m in metrics)
    cfg = json.load(open(out / "config.json"))
    res = cfg["result"]
    assert res["test_accuracy"] == metrics[res["best_epoch"] - 1]["test_accuracy"]
    assert 0 <= res["baseline_test_accuracy"] <= 1
    assert res["alpha"] == pytest.approx(0.1 * 250 / 20)  # 300 rows - 50 for validation
    assert cfg["dataset"]["n_val"] == 50 and cfg["options"]["labels"] == 20
    model = SemiSupervisedVAE.load(out / "checkpoint.npz")
    assert model.n_classes == 10 and model.best_epoch_ == res["best_epoch"]
    for name in ("samples_by_class.png", "analogies.png"):
        assert_png(out / name)
    # other commands name what the file is instead of failing on its kind
    assert main(["sample", str(out)]) == 2
    one_error_line(capsys, "semi-supervised", "SemiSupervisedVAE.load")


def test_labels_are_balanced_and_follow_the_seed(tmp_path, monkeypatch):
    seen = []
    real_fit = SemiSupervisedVAE.fit

    def spy(self, X, y, **kw):
        seen.append(np.array(y))
        return real_fit(self, X, y, **{**kw, "epochs": 1})

    monkeypatch.setattr(SemiSupervisedVAE, "fit", spy)
    for i, seed in enumerate(("0", "0", "1")):
        assert main(["train", "--semi-supervised", *TINY, "--no-figures", "--seed", seed,
                     "--out", str(tmp_path / str(i))]) == 0
    assert all(np.bincount(y[y >= 0]).tolist() == [2] * 10 for y in seen)
    assert np.array_equal(seen[0], seen[1]) and not np.array_equal(seen[0], seen[2])


@pytest.mark.parametrize("argv, words", [
    (["train", "--labels", "20"], ["--semi-supervised"]),
    (["train", "--semi-supervised", "--beta", "2"], ["--beta", "VAE option"]),
    (["train", "--semi-supervised", "--resume", "x"], ["--resume"]),
    (["train", "--semi-supervised", "--objective", "iwae"], ["--objective", "VAE option"]),
    (["train", "--semi-supervised", "--k", "5"], ["--k", "VAE option"]),
    (["train", "--semi-supervised", "--dataset", "digits", "--labels", "15"],
     ["--labels 15", "multiple of the 10 classes"]),
])
def test_semi_supervised_user_errors_exit_2(argv, words, capsys):
    assert main(argv) == 2
    one_error_line(capsys, *words)


def test_user_file_without_labels(tmp_path, capsys):
    path = tmp_path / "x.npz"
    np.savez(path, x=np.random.default_rng(0).random((40, 4)))
    assert main(["train", "--semi-supervised", "--data", str(path), "--out",
                 str(tmp_path / "r")]) == 2
    one_error_line(capsys, "integer class label", "'y'")
    assert not os.path.exists(tmp_path / "r" / "checkpoint.npz")
