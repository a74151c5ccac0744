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
