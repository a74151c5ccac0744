"""One registry per concept, and nothing registered without its pieces.

Every activation class is in ``npvae.core.activations.ACTIVATIONS`` and every likelihood
class in ``npvae.core.likelihoods.LIKELIHOODS`` (a subclass that sets ``name`` registers
itself). For each registered class this checks the pieces that are not derived from the
registry: its gradient cases in tests/cases.py and, for an activation, the branch of the
Numba kernels (compiled forward and backward against the class's own definition). The
pieces that are derived (the CLI's choices, the warm-up) are checked to follow it.
"""

import inspect
import pathlib
import re

import numpy as np
import pytest

import npvae.core.layers
from npvae.core.activations import ACTIVATIONS, Activation
from npvae.core.likelihoods import LIKELIHOODS, Likelihood
from tests.cases import ACTIVATION_CASES, LAYER_CASES, LIKELIHOOD_CASES


def public_classes(module, base=None):
    found = set()
    for name, obj in inspect.getmembers(module, inspect.isclass):
        if obj.__module__ != module.__name__ or name.startswith("_"):
            continue
        if base is None or (issubclass(obj, base) and obj is not base):
            found.add(obj)
    return found


def subclasses(base):
    """Every public subclass of ``base`` defined in npvae (abstract ``_`` helpers excluded)."""
    out, todo = set(), list(base.__subclasses__())
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.__module__.startswith("npvae.") and not cls.__name__.startswith("_"):
            out.add(cls)
    return out


def test_every_activation_is_registered_and_has_gradient_cases():
    assert subclasses(Activation) == set(ACTIVATIONS.values()), "give the class a name"
    assert set(ACTIVATIONS.values()) == set(ACTIVATION_CASES), \
        "add the new activation to tests/cases.py"


def test_every_likelihood_is_registered_and_has_gradient_cases():
    assert subclasses(Likelihood) == set(LIKELIHOODS.values()), "give the class a name"
    assert set(LIKELIHOODS.values()) == set(LIKELIHOOD_CASES), \
        "add the new likelihood to tests/cases.py"


def test_a_name_or_code_cannot_be_registered_twice():
    with pytest.raises(TypeError, match="taken by ReLU"):
        type("Other", (Activation,), {"name": "relu", "code": 99})
    with pytest.raises(TypeError, match="taken by ReLU"):
        type("Other", (Activation,), {"name": "other", "code": ACTIVATIONS["relu"].code})
    with pytest.raises(TypeError, match="taken by Bernoulli"):
        type("Other", (Likelihood,), {"name": "bernoulli"})
    assert "other" not in ACTIVATIONS and "Other" not in map(str, LIKELIHOODS)


def test_every_layer_class_has_gradient_tests():
    classes = {c.__name__ for c in public_classes(npvae.core.layers)}
    assert classes == set(LAYER_CASES), "add gradient tests for the new layer class"


def test_every_kernel_is_tested_against_its_reference():
    from npvae.kernels import KERNEL_NAMES

    here = pathlib.Path(__file__).parent
    source = "".join((here / name).read_text() for name in ("test_kernels.py",
                                                            "test_nll_rows.py"))
    untested = [k for k in KERNEL_NAMES if f".{k}(" not in source]
    assert not untested, f"kernels without a kernel-vs-reference test: {untested}"


# ------------------------------------------------------------------ activations' kernels
def compiled_activation(kernels, act, a, b):
    """``(y, da, db)`` from ``kernels``: the fused forward of pre-activation ``a + b``, and
    the backward of ``dy = 1 + a`` from what the layer would keep."""
    y = a.copy()
    kernels.bias_act(y, b, act.code, act.param)
    dy = 1.0 + a
    db = np.empty_like(b)
    kernels.act_backward(dy, act.saved(a + b, y), act.code, act.param, db)
    return y, dy, db


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", [a for cases in ACTIVATION_CASES.values() for a in cases],
                         ids=repr)
def test_every_activation_is_compiled_as_defined(act, dtype):
    """A registered activation without its branch in the Numba kernels fails here: the
    compiled forward and backward must be the class's ``forward`` and ``derivative``."""
    pytest.importorskip("numba")
    from npvae.kernels import get_kernels

    grid = np.concatenate([np.linspace(-8, 8, 41), [-60, -1e-3, 0, 1e-3, 60]])
    a = np.stack([grid, grid[::-1]]).astype(dtype)  # (2, 46), both signs in each column
    b = np.linspace(-0.5, 0.5, a.shape[1]).astype(dtype)
    y, da, db = compiled_activation(get_kernels("numba"), act, a, b)
    pre = a + b
    want_y = act.forward(pre)
    want_da = (1.0 + a) * act.derivative(act.saved(pre, want_y))
    tol = {np.float32: 1e-5, np.float64: 1e-12}[dtype]
    np.testing.assert_allclose(y, want_y, rtol=tol, atol=tol)
    np.testing.assert_allclose(da, want_da, rtol=tol, atol=tol)
    np.testing.assert_allclose(db, want_da.sum(axis=0), rtol=tol, atol=2 * tol)


# ------------------------------------------------------------------ derived from the registry
def choices(option):
    from npvae.cli.parser import build_parser

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    return next(a.choices for a in train._actions if option in a.option_strings)


def test_cli_choices_are_the_registries():
    assert list(choices("--activation")) == list(ACTIVATIONS)
    assert list(choices("--likelihood")) == list(LIKELIHOODS)


def test_warmup_runs_every_registered_activation(monkeypatch):
    pytest.importorskip("numba")
    from npvae.kernels import get_kernels, warmup

    k = get_kernels("numba")
    seen = set()
    for name in ("bias_act", "bias_act_pre", "act_backward"):
        fn = getattr(k, name)

        def spy(*args, fn=fn, name=name):
            seen.add((name, args[2]))
            return fn(*args)

        monkeypatch.setattr(k, name, spy)
    warmup(dtypes=("float64",))
    want = {(name, cls.code) for cls in ACTIVATIONS.values()
            for name in ("bias_act_pre" if cls.needs_pre else "bias_act", "act_backward")}
    assert want <= seen


def test_every_class_is_derived_in_math_md():
    """docs/math.md derives every gradient: each registered class is named there."""
    math_md = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "math.md").read_text()
    missing = [cls.__name__ for cls in [*ACTIVATIONS.values(), *LIKELIHOODS.values()]
               if not re.search(rf"\b{cls.__name__}\b", math_md)]
    assert not missing, f"derive these in docs/math.md: {missing}"
