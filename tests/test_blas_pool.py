"""NumPy's BLAS on Numba's pool (npvae.plumbing.blas_pool): same products, same training;
safe with other Python threads, with fewer Numba threads, and after a fork."""

import ctypes
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

pytest.importorskip("numba")

from npvae import Adam  # noqa: E402
from npvae.core.model import VAEModel  # noqa: E402
from npvae.kernels import get_kernels  # noqa: E402


@pytest.fixture(scope="module")
def pool():
    pool = get_kernels("numba").blas_pool
    if not pool.available:
        pytest.skip("NumPy's BLAS is not a bundled OpenBLAS with a thread callback, or "
                    "Numba's threading layer is not omp: npvae leaves BLAS threads alone")
    return pool


def installed(pool):
    """The callback OpenBLAS will call, read from the library's global variable."""
    return ctypes.c_void_p.in_dll(pool.library, "openblas_threads_callback_").value


def products(rng, dtype):
    """Operands whose products OpenBLAS splits into jobs: GEMMs (also with transposed
    operands, as the backward pass has them) and a large GEMV."""
    a = rng.standard_normal((512, 784)).astype(dtype)
    b = rng.standard_normal((784, 400)).astype(dtype)
    c = rng.standard_normal((2048, 2048)).astype(dtype)
    v = rng.standard_normal(2048).astype(dtype)
    return [(a, b), (a.T, a[:, :400]), (a[:, :400].copy(), b.T), (c, v), (v[None], c)]


@pytest.fixture()
def off(pool):
    """Run a block on OpenBLAS's own threads, then put the callback back."""
    class Off:
        def __enter__(self):
            pool.uninstall()
            assert installed(pool) is None

        def __exit__(self, *exc):
            pool._install()
    return Off()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_products_are_bitwise_the_same_on_either_pool(pool, off, dtype):
    from npvae.plumbing.blas_pool import _callback

    pairs = products(np.random.default_rng(0), dtype)
    assert pool.active and installed(pool) == _callback.address
    got = [np.dot(a, b) for a, b in pairs]
    with off:
        expected = [np.dot(a, b) for a, b in pairs]
    for e, g in zip(expected, got, strict=True):
        assert np.array_equal(e, g)


def test_training_is_bitwise_the_same_on_either_pool(pool, off):
    rng = np.random.default_rng(1)
    x = (rng.random((128, 784)) < 0.5).astype(np.float32)
    noise = rng.standard_normal((5, 1, 128, 20)).astype(np.float32)

    def train():
        m = VAEModel(784, 20, hidden=(400,), seed=0, backend="numba")
        opt = Adam(m.params, lr=1e-3)
        losses = [m.train_step(x, opt, noise=noise[i])[0] for i in range(5)]
        return losses, m.params.data.copy(), m.reconstruct_mean(x)

    l1, p1, r1 = train()
    with off:
        l2, p2, r2 = train()
    assert l1 == l2
    assert np.array_equal(p1, p2) and np.array_equal(r1, r2)


def test_other_threads_get_right_products_while_a_model_trains(pool):
    """BLAS calls from several Python threads at once must stay exact (without the lock in
    the callback they were not: they share OpenBLAS's per-thread buffers)."""
    rng = np.random.default_rng(2)
    pairs = products(rng, "float32")[:3]
    expected = [np.dot(a, b) for a, b in pairs]
    wrong, stop = [], threading.Event()

    def work():
        while not stop.is_set():
            for (a, b), e in zip(pairs, expected, strict=True):
                if not np.array_equal(np.dot(a, b), e):
                    wrong.append(a.shape)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        m = VAEModel(784, 20, hidden=(400,), seed=0, backend="numba")
        opt = Adam(m.params, lr=1e-3)
        x = (rng.random((256, 784)) < 0.5).astype(np.float32)
        for _ in range(30):
            m.train_step(x, opt)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not wrong


def run(code, env, timeout=120):
    env = {**os.environ, **env}
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, env=env, timeout=timeout)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_fewer_numba_threads_than_blas_jobs_does_not_hang(pool):
    """A GEMM's jobs wait on each other: with Numba at 1 thread and OpenBLAS at 2, the
    callback raises Numba's count for the call (in a subprocess: a bug here hangs)."""
    code = """
        import numba, numpy as np
        from npvae.kernels import get_kernels
        pool = get_kernels("numba").blas_pool
        a = np.random.default_rng(0).standard_normal((512, 784)).astype(np.float32)
        pool.uninstall()
        ref = a.T @ a
        pool._install()
        numba.set_num_threads(1)
        print(pool.active, np.array_equal(a.T @ a, ref), numba.get_num_threads())
    """
    out = run(code, {"OPENBLAS_NUM_THREADS": "2", "NUMBA_NUM_THREADS": "2"}).split()
    assert out == ["True", "True", "1"]


def test_a_forked_child_gets_openblas_threads_back(pool):
    code = """
        import os, numpy as np
        from npvae.kernels import get_kernels
        pool = get_kernels("numba").blas_pool
        a = np.random.default_rng(0).standard_normal((512, 784)).astype(np.float32)
        ref = a.T @ a  # the parent has used the pool
        pid = os.fork()
        if pid == 0:
            ok = not pool.active and np.array_equal(a.T @ a, ref)
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        print(pool.active, os.waitstatus_to_exitcode(status))
    """
    assert run(code, {}).split() == ["True", "0"]


def test_pool_can_be_turned_off():
    out = run("""
        from npvae.kernels import get_kernels
        print(get_kernels("numba").blas_pool.available)
    """, {"NPVAE_BLAS_POOL": "0"})
    assert out == "False"


def test_numpy_backend_installs_nothing():
    assert not get_kernels("numpy").blas_pool.available
