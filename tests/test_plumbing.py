"""The platform plumbing's capability probe (npvae.plumbing.capabilities): a piece that
fails on this system (simulated here, one piece at a time, in a fresh process) is left off
with one warning and the results stay correct; NPVAE_PLUMBING=0 turns every piece off,
silently."""

import functools
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("numba")

import npvae.plumbing  # noqa: E402

# piece -> (module, attribute replaced by a function that raises): a self-test for the two
# compiled into the kernels, a loader or constructor for the others (for blas_pool its
# library lookup: importing npvae.plumbing.blas_pool itself compiles the callback, which
# must not happen before Numba's pool has started)
FAILURES = {
    "ufunc_loop": ("ufunc_loop", "self_test"),
    "fpmode": ("fpmode", "self_test"),
    "blas_pool": ("openblas", "numpy_openblas"),
    "gemm": ("gemm", "_find"),
    "cores": ("cores", "ThreadPacer"),
}

SCRIPT = """
import json, warnings
import numpy as np
if {module!r}:
    import importlib
    piece = importlib.import_module("npvae.plumbing." + {module!r})
    def boom(*args, **kwargs):
        raise RuntimeError("simulated failure")
    setattr(piece, {attr!r}, boom)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from npvae.kernels import _numba, gemm_info, get_kernels
    kernels = get_kernels("numba")
from npvae.core.model import VAEModel
from npvae.core.optim import Adam
from npvae.plumbing import capabilities

rng = np.random.default_rng(0)
x = rng.random((3, 12))
params = []
for backend in ("numba", "numpy"):
    m = VAEModel(12, 2, hidden=(7,), dtype="float64", seed=1, backend=backend)
    opt = Adam(m.params, lr=1e-2)
    for step in range(4):
        m.train_step(x[:1 + step % 3], opt, noise=np.full((1, 1 + step % 3, 2), 0.3))
    params.append(m.params.data.copy())
print(json.dumps({{
    "caps": {{name: list(cap) for name, cap in capabilities().items()}},
    "warnings": [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)],
    "error": float(np.max(np.abs(params[0] - params[1]) / (1e-12 + np.abs(params[1])))),
    "tag": _numba._parts.tag, "cache": _numba.bias_act._cache._cache_path,
    "gemm": gemm_info("numba")["provider"], "pool": kernels.blas_pool.active,
    "pace": kernels.pace is not None,
}}))
"""


@functools.cache
def runs():
    """Every case at once, each in its own process (they compile, so in parallel). Run in
    the suite's default pass only: the cases set their own backend and plumbing."""
    from npvae.kernels import default_backend

    if default_backend() != "numba" or not npvae.plumbing.enabled():
        pytest.skip("the fresh processes run once, in the numba pass with the plumbing on")
    env = {k: v for k, v in os.environ.items() if k != "NPVAE_PLUMBING"}
    cases = {name: (dict(env), *where) for name, where in FAILURES.items()}
    cases["disabled"] = ({**env, "NPVAE_PLUMBING": "0"}, "", "")
    procs = {name: subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SCRIPT.format(module=module, attr=attr))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=case_env)
        for name, (case_env, module, attr) in cases.items()}
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=900)
        assert proc.returncode == 0, f"{name}: {stderr}"
        out[name] = json.loads(stdout.strip().splitlines()[-1])
    return out


def test_capabilities_name_every_piece_and_say_why_not():
    caps = npvae.plumbing.capabilities()
    assert list(caps) == list(npvae.plumbing.PIECES)
    for name, cap in caps.items():
        assert isinstance(cap, npvae.plumbing.Capability)
        assert cap.on or cap.why, f"{name} is off without a reason"
        assert not cap.failed, f"{name} failed on this machine: {cap.why}"


@pytest.mark.parametrize("piece", list(FAILURES))
def test_a_failing_piece_is_left_off_with_one_warning(piece):
    run = runs()[piece]
    assert len(run["warnings"]) == 1, run["warnings"]
    assert f"{piece}: " in run["warnings"][0] and "simulated failure" in run["warnings"][0]
    assert "NPVAE_PLUMBING=0" in run["warnings"][0]
    on, why, failed = run["caps"][piece]
    assert not on and failed and "simulated failure" in why
    others = {name: cap for name, cap in run["caps"].items() if name != piece}
    assert not any(cap[2] for cap in others.values())  # nothing else failed
    assert run["error"] < 1e-10  # the plain path trains as the numpy backend does
    if piece in ("ufunc_loop", "fpmode"):  # compiled with a stand-in, cached apart
        tag = {"ufunc_loop": "exp", "fpmode": "ftz"}[piece]
        assert run["tag"] == tag and f"npvae-plain-{tag}" in run["cache"]
    if piece == "gemm":
        assert run["gemm"] == "numpy" and not run["pace"]
    if piece == "blas_pool":
        assert not run["pool"]
    if piece == "cores":
        assert not run["pace"]


def test_plumbing_disabled_is_silent_and_plain():
    run = runs()["disabled"]
    assert run["warnings"] == []
    assert all(cap == [False, "NPVAE_PLUMBING=0", False] for cap in run["caps"].values())
    assert run["tag"] == "exp-ftz" and "npvae-plain-exp-ftz" in run["cache"]
    assert run["gemm"] == "numpy" and not run["pool"] and not run["pace"]
    assert run["error"] < 1e-10


def test_working_plumbing_keeps_the_default_cache():
    from npvae.kernels import _numba

    if not npvae.plumbing.enabled():
        pytest.skip("NPVAE_PLUMBING=0")
    assert _numba._parts.tag == "" and "npvae-plain" not in _numba.bias_act._cache._cache_path


def test_a_library_that_fails_to_load_is_a_failure_not_an_absence(monkeypatch):
    """A LoadFailure (the library is there but would not load) is warned about; an absent
    library is only a reason."""
    from npvae.plumbing import gemm, openblas, probe

    monkeypatch.delenv("NPVAE_PLUMBING", raising=False)
    monkeypatch.setattr(gemm, "_state", {})
    monkeypatch.setenv("NPVAE_GEMM", "auto")
    monkeypatch.setattr(gemm, "_find", lambda name: (None, openblas.LoadFailure(
        f"{name}: could not be loaded") if name == "mkl" else "absent"))
    monkeypatch.setattr(probe, "_caps", {})
    assert probe._attempt("gemm", probe._probe_gemm) is None
    cap = probe._caps["gemm"]
    assert not cap.on and cap.failed and "could not be loaded" in cap.why
    monkeypatch.setattr(gemm, "_state", {})
    monkeypatch.setattr(gemm, "_find", lambda name: (None, "absent"))
    probe._attempt("gemm", probe._probe_gemm)
    assert probe._caps["gemm"] == (False, "mkl: absent; openblas: absent", False) or \
        probe._caps["gemm"] == (False, "openblas: absent; mkl: absent", False)
    with pytest.warns(RuntimeWarning, match="gemm: boom"):
        monkeypatch.setattr(probe, "_caps", {"gemm": probe.Capability(False, "boom", True)})
        probe._warn()


def test_self_tests_pass_here():
    from npvae.plumbing import blas_pool, fpmode, gemm, ufunc_loop

    if not npvae.plumbing.enabled():
        pytest.skip("NPVAE_PLUMBING=0")
    ufunc_loop.self_test()
    if fpmode.AVAILABLE:
        fpmode.self_test()
    gemm.self_test()
    blas_pool.self_test()
    assert np.isfinite(np.dot(np.ones((300, 300)), np.ones((300, 300)))).all()
