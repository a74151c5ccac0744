"""The two backends give the same losses and gradients; import compiles nothing; compiled
kernels are cached on disk so a second process starts fast."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from npvae.core.model import VAEModel
from npvae.kernels import default_backend, get_kernels


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-10), ("float32", 2e-5)])
@pytest.mark.parametrize("lik", ["bernoulli", "gaussian-diag"])
def test_backends_agree_on_loss_and_gradient(dtype, rtol, lik):
    pytest.importorskip("numba")
    rng = np.random.default_rng(0)
    x = rng.random((16, 30))
    noise = rng.standard_normal((2, 16, 5))
    out = {}
    for backend in ("numba", "numpy"):
        m = VAEModel(30, 5, hidden=(24, 12), likelihood=lik, n_samples=2, cond_dim=3,
                     dtype=dtype, backend=backend, free_bits=0.01)
        loss, parts = m.loss_and_grad(x, rng.random((16, 3)) * 0 + 0.5, noise=noise)
        out[backend] = (loss, m.params.grad.copy())
    assert out["numba"][0] == pytest.approx(out["numpy"][0], rel=rtol)
    g_nb, g_np = out["numba"][1], out["numpy"][1]
    assert np.linalg.norm(g_nb - g_np) <= rtol * 10 * np.linalg.norm(g_np)


def test_backend_selection_by_environment(monkeypatch):
    monkeypatch.setenv("NPVAE_BACKEND", "numpy")
    assert default_backend() == "numpy"
    monkeypatch.setenv("NPVAE_BACKEND", "numba")
    monkeypatch.setenv("NPVAE_DISABLE_NUMBA", "1")
    assert default_backend() == "numpy"
    monkeypatch.delenv("NPVAE_DISABLE_NUMBA")
    monkeypatch.setenv("NPVAE_BACKEND", "fortran")
    with pytest.raises(ValueError, match="is not a backend"):
        default_backend()
    assert get_kernels("numpy").name == "numpy"


def run(code, env=None):
    env = {**os.environ, **(env or {})}
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_import_is_light_and_compiles_nothing():
    """``import npvae`` loads neither Numba (so nothing is compiled) nor the plotting,
    scikit-learn or framework stacks. (Its time is measured by bench/run.py, not asserted
    here: on a loaded machine it varies by 3x.)"""
    out = run("""
        import sys
        import npvae
        print(" ".join(m for m in ("numba", "matplotlib", "sklearn", "torch", "jax")
                       if m in sys.modules) or "none")
    """)
    assert out.strip() == "none"


def test_kernels_are_cached_on_disk(tmp_path):
    pytest.importorskip("numba")
    code = """
        import time, numpy as np
        from npvae.kernels import get_kernels
        k = get_kernels("numba")
        y = np.ones((3, 4), np.float32)
        t = time.perf_counter()
        k.bias_act(y, np.zeros(4, np.float32), 1, 0.0)
        print(time.perf_counter() - t, sum(k.bias_act.stats.cache_hits.values()))
    """
    env = {"NUMBA_CACHE_DIR": str(tmp_path), "NPVAE_BACKEND": "numba"}
    first, hits1 = run(code, env).split()
    second, hits2 = run(code, env).split()
    assert int(hits1) == 0 and int(hits2) == 1, "the second process must load from the cache"
    assert any(tmp_path.rglob("*.nbi")), "no index file in NUMBA_CACHE_DIR"
    assert float(second) < float(first)


def test_numba_pool_setting_does_not_leak_into_the_environment():
    """npvae starts Numba's pool with GOMP_SPINCOUNT (one pool for BLAS and kernels) or
    OMP_WAIT_POLICY=PASSIVE (two pools) and then restores the environment, so OpenMP
    runtimes loaded later see the user's settings; a value the user set is kept."""
    pytest.importorskip("numba")
    code = """
        import os
        from npvae.kernels import get_kernels
        assert get_kernels("numba").name == "numba"
        print(os.environ.get("OMP_WAIT_POLICY"), os.environ.get("GOMP_SPINCOUNT"))
    """
    clean = {k: v for k, v in os.environ.items()
             if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    for pool in ("1", "0"):
        res = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                             capture_output=True, text=True, timeout=300,
                             env={**clean, "NPVAE_BLAS_POOL": pool})
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == "None None"
    assert run(code, {"OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE None"
    assert run(code, {"GOMP_SPINCOUNT": "7"}) == "None 7"


def test_warmup_compiles_every_kernel():
    """After warmup() in a fresh process no Numba kernel is left to compile on first use,
    the prange twins (taken only for large buffers) and the MKL GEMM (when used)
    included."""
    pytest.importorskip("numba")
    out = run("""
        import numba
        from npvae.kernels import (_numba, _numba_dense, _numba_iwae, _numba_kl,
                                   _numba_likelihood, _numba_optim, _numba_samplers,
                                   gemm_info, warmup)
        from npvae.plumbing import gemm as _gemm
        warmup()
        modules = [_numba, _numba_dense, _numba_kl, _numba_iwae, _numba_likelihood,
                   _numba_optim, _numba_samplers]
        modules += [_gemm] if gemm_info("numba")["provider"] != "numpy" else []
        print([name for m in modules for name, f in vars(m).items()
               if isinstance(f, numba.core.registry.CPUDispatcher)
               and f.targetoptions.get("inline") != "always" and not f.signatures])
    """, {"NUMBA_NUM_THREADS": "2"})
    assert out == "[]"
