"""Nothing ships without a gradient check: every public layer, activation and likelihood
class of the package must appear in tests/cases.py, which the gradient tests run over."""

import inspect
import pathlib

import npvae.core.activations
import npvae.core.layers
import npvae.core.likelihoods
from tests.cases import ACTIVATION_CASES, LAYER_CASES, LIKELIHOOD_CASES


def public_classes(module, base=None):
    found = set()
    for name, obj in inspect.getmembers(module, inspect.isclass):
        if obj.__module__ != module.__name__ or name.startswith("_"):
            continue
        if base is None or (issubclass(obj, base) and obj is not base):
            found.add(obj)
    return found


def test_every_activation_has_gradient_cases():
    classes = public_classes(npvae.core.activations, npvae.core.activations.Activation)
    assert classes == set(ACTIVATION_CASES), "add the new activation to tests/cases.py"


def test_every_likelihood_has_gradient_cases():
    classes = public_classes(npvae.core.likelihoods, npvae.core.likelihoods.Likelihood)
    assert classes == set(LIKELIHOOD_CASES), "add the new likelihood to tests/cases.py"


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
