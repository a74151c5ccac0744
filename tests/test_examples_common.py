"""The examples' shared options: figures go to a folder of the user's unless asked."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import _common  # noqa: E402


def test_figures_go_under_the_current_directory_unless_asked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = _common.parse(_common.parser("doc"), [])
    assert args.out == Path("runs") / "examples" and (tmp_path / "runs" / "examples").is_dir()
    assert _common.parse(_common.parser("doc"), ["--out", "figs"]).out == Path("figs")
    ap = _common.parser("doc")
    assert ap.parse_args(["--readme-images"]).out == _common.README_IMAGES
    assert _common.README_IMAGES.parts[-3:] == ("docs", "images", "examples")
    with pytest.raises(SystemExit):  # not both
        ap.parse_args(["--readme-images", "--out", "x"])
