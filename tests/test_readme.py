"""The README's Python examples run as written."""

import contextlib
import io
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_quickstart_runs_and_the_loss_falls():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(python_blocks()[0], {"__name__": "__readme__"})
    losses = [float(m) for m in re.findall(r"-ELBO\s+([\d.]+)", out.getvalue())]
    assert len(losses) == 7
    assert losses[-1] < 0.5 * losses[0]


def test_gradcheck_example_runs():
    block = next(b for b in python_blocks() if "check_model" in b)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(block, {"__name__": "__readme__"})
    errors = eval(out.getvalue())
    assert errors and max(errors.values()) < 1e-6


def test_inference_example_runs():
    """The posterior-inference snippet: its bounds come out ordered."""
    block = next(b for b in python_blocks() if "sample_posterior" in b)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(block, {"__name__": "__readme__"})
    text = out.getvalue()
    assert "(5, 2) (5, 2, 2) (5, 2) True" in text, text
    elbo, log_px = (float(v) for v in re.findall(r"ELBO\(q\*\) (\S+) <= log p\(x\) (\S+)",
                                                 text)[0])
    lo, hi = (float(v) for v in re.findall(r"BDMC: (\S+) <= log p\(x\) <= (\S+)", text)[0])
    assert elbo < log_px and lo < hi + 0.5
