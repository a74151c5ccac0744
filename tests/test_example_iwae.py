"""examples/iwae.py runs end to end on a few epochs (the README quotes its full run)."""

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "iwae.py"


def test_iwae_example_runs_and_writes_its_figure(tmp_path, monkeypatch, capsys):
    pytest.importorskip("sklearn")  # the digits
    monkeypatch.syspath_prepend(str(EXAMPLE.parent))
    monkeypatch.setattr(sys, "argv", [str(EXAMPLE), "--epochs", "1", "--eval-k", "10",
                                      "--ks", "2", "--out", str(tmp_path)])
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    out = capsys.readouterr().out
    assert "| VAE (ELBO) |" in out and "| IWAE k=2 |" in out
    assert (tmp_path / "iwae.png").stat().st_size > 20_000
