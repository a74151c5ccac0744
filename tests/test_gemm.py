"""The numba backend's GEMM (npvae.plumbing.gemm: sequential MKL or OpenBLAS calls split
over Numba's threads) against ``np.dot``, on every layout a dense layer passes and on the
ones BLAS cannot take, for every provider this machine has.

Two GEMMs that sum in different orders agree to the rounding bound of a dot product:
``|C1 - C2| <= 2 * K * eps * (|A| @ |B|)``, elementwise (each is within ``K * eps`` of the
exact product). A block written to the wrong place or a wrong leading dimension is off by
far more than that.
"""

import importlib.metadata
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.strategies import seeds

pytest.importorskip("numba")
from npvae.plumbing import gemm as _gemm
from npvae.plumbing import mkl as _mkl  # noqa: E402
from npvae.plumbing import openblas as _openblas  # noqa: E402

USED, WHY = _gemm.provider()
FOUND = {name: _gemm._find(name) for name in ("mkl", "openblas")}
MKL = FOUND["mkl"][0] if USED is None or USED.name != "mkl" else USED
needs_mkl = pytest.mark.skipif(MKL is None, reason=f"MKL not here: {FOUND['mkl'][1]}")
PROVIDERS = [pytest.param(name, marks=pytest.mark.skipif(
    FOUND[name][0] is None, reason=f"{name} not here: {FOUND[name][1]}"))
    for name in ("mkl", "openblas")]
DTYPES = [np.float32, np.float64]


def split_gemm(name, a, b, out, parts):
    """:func:`npvae.plumbing.gemm._gemm` through provider ``name``."""
    p = FOUND[name][0]
    return _gemm._gemm(p.gemm[out.dtype], a, b, out, parts)


def installed(dist):
    try:
        importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def assert_gemm_close(got, a, b):
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    eps = np.finfo(got.dtype).eps
    bound = 2 * max(a.shape[1], 1) * eps * (np.abs(a64) @ np.abs(b64))
    err = np.abs(got.astype(np.float64) - a64 @ b64)
    assert np.all(err <= bound + np.finfo(got.dtype).tiny), float(np.max(err - bound))


def operand(rng, shape, dtype, order):
    """An operand of ``shape`` laid out as a dense layer passes it: C-ordered (``"C"``), a
    transposed view of a C array (``"T"``, like ``x.T`` or ``W.T``), or a column slice
    with rows wider than it (``"S"``, leading dimension larger than the width)."""
    if order == "T":
        return np.ascontiguousarray(rng.standard_normal(shape[::-1]).astype(dtype)).T
    if order == "S":
        return rng.standard_normal((shape[0], shape[1] + 3)).astype(dtype)[:, 1:1 + shape[1]]
    return rng.standard_normal(shape).astype(dtype)


def test_the_split_gemm_is_used_when_a_provider_is_here():
    """CI installs the ``mkl`` extra, and scipy-openblas32 is a dependency: there, these
    tests must run both providers, not skip, and auto picks MKL on Intel, else OpenBLAS."""
    if _gemm.choice() != "auto":
        pytest.skip(f"NPVAE_GEMM={_gemm.choice()}")
    assert FOUND["openblas"][0] is not None, FOUND["openblas"][1]
    if installed("mkl"):
        assert MKL is not None, FOUND["mkl"][1]
    intel = _openblas.cpu_vendor() == "GenuineIntel"
    assert _gemm.info()["provider"] == ("mkl" if intel and MKL is not None else "openblas")


@pytest.mark.parametrize("vendor,first", [("GenuineIntel", "mkl"), ("AuthenticAMD", "openblas"),
                                          (None, "openblas")])
def test_auto_prefers_mkl_on_intel_only(monkeypatch, vendor, first):
    monkeypatch.setenv("NPVAE_GEMM", "auto")  # the order auto tries, whatever this run chose
    monkeypatch.setattr(_gemm, "_state", {})
    monkeypatch.setattr(_openblas, "cpu_vendor", lambda: vendor)
    tried = []
    monkeypatch.setattr(_gemm, "_find", lambda name: tried.append(name) or (None, "absent"))
    assert _gemm.provider() == (None, f"{first}: absent; "
                                      f"{'openblas' if first == 'mkl' else 'mkl'}: absent")
    assert tried[0] == first


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("dtype", DTYPES)
@given(m=st.integers(1, 40), k=st.integers(1, 40), n=st.integers(1, 40),
       orders=st.tuples(*[st.sampled_from("CTS")] * 2), parts=st.integers(1, 3),
       seed=seeds)
def test_blocks_match_np_dot(provider, dtype, m, k, n, orders, parts, seed):
    """Every layout, split into 1-3 blocks of rows or columns (``parts`` forced, so small
    products are cut up too)."""
    rng = np.random.default_rng(seed)
    a, b = operand(rng, (m, k), dtype, orders[0]), operand(rng, (k, n), dtype, orders[1])
    out = np.full((m, n), np.nan, dtype)
    assert split_gemm(provider, a, b, out, parts)
    assert_gemm_close(out, a, b)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("dtype", DTYPES)
@given(m=st.integers(1, 40), k=st.integers(1, 40), n=st.integers(1, 120),
       orders=st.tuples(*[st.sampled_from("CTS")] * 2), width=st.sampled_from([16, 32, 64]),
       seed=seeds)
def test_narrow_blocks_match_np_dot(provider, dtype, m, k, n, orders, width, seed):
    """Blocks of a fixed width (``NARROW``), the last one narrower, on every layout: over
    the pool and one after the other on one thread (a pool of one, a forked child), the
    same bits both ways. (A product taller than wide is cut into rows over the pool and is
    one call on one thread: close, not the same bits.)"""
    rng = np.random.default_rng(seed)
    a, b = operand(rng, (m, k), dtype, orders[0]), operand(rng, (k, n), dtype, orders[1])
    out = [np.full((m, n), np.nan, dtype) for _ in range(2)]
    fn = FOUND[provider][0].gemm[np.dtype(dtype)]
    assert _gemm._gemm(fn, a, b, out[0], 2, width)
    assert_gemm_close(out[0], a, b)
    assert _gemm._gemm(fn, a, b, out[1], 1, width)
    assert_gemm_close(out[1], a, b)
    if n >= m:
        np.testing.assert_array_equal(out[1], out[0])


def test_narrow_widths_by_rows():
    """The (rows, width) table reads as: up to ``rows`` rows, blocks of ``width``."""
    widths = _gemm._widths(((3, 0), (16, 64), (32, 32)))
    assert len(widths) == 33
    assert widths[:4] == (0,) * 4 and widths[4:17] == (64,) * 13 and widths[17:] == (32,) * 16
    assert _gemm._widths(()) == ()


@pytest.mark.skipif(USED is None, reason=f"np.dot is used here: {WHY}")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,k,n", [(1, 784, 400), (4, 400, 784), (16, 784, 400),
                                   (24, 400, 40), (32, 400, 784), (128, 784, 400), (128, 400, 784),
                                   (400, 128, 784), (784, 1, 400), (513, 37, 250)])
def test_model_shapes_split_over_threads(dtype, m, k, n):
    """The model's shapes (batch 1, 4-32 in narrow blocks, and 128) through the public
    entry point, above the size where the product is split over the threads."""
    rng = np.random.default_rng(m * n + k)
    for a in (operand(rng, (m, k), dtype, "C"), operand(rng, (m, k), dtype, "T")):
        for b in (operand(rng, (k, n), dtype, "C"), operand(rng, (k, n), dtype, "T")):
            out = np.full((m, n), np.nan, dtype)
            assert _gemm.matmul(a, b, out) is out
            assert_gemm_close(out, a, b)


@pytest.mark.skipif(USED is None, reason=f"np.dot is used here: {WHY}")
def test_operands_blas_cannot_take_go_to_np_dot():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 8)).astype(np.float32)
    b = rng.standard_normal((8, 5)).astype(np.float32)

    def gemm_(x, y, out, parts):
        return _gemm._gemm(USED.gemm[out.dtype], x, y, out, parts)

    cases = {
        "every other column": (a[:, ::2], b[::2], np.empty((6, 5), np.float32)),
        "reversed rows": (a[::-1], b, np.empty((6, 5), np.float32)),
        "empty inner dimension": (a[:, :0], b[:0], np.empty((6, 5), np.float32)),
    }
    for name, (x, y, out) in cases.items():
        assert not gemm_(x, y, out, 2), name
        _gemm.matmul(x, y, out)
        np.testing.assert_allclose(out, np.dot(x, y), rtol=1e-6, atol=1e-6, err_msg=name)
    # a column-major out: np.dot refuses it too (the contract is a C-ordered out)
    assert not gemm_(a, b, np.empty((6, 5), np.float32, order="F"), 2)
    # out overlapping an input: BLAS would read what it already wrote
    buf = rng.standard_normal((8, 8)).astype(np.float32)
    x, want = buf[:, :8], buf[:, :8] @ buf[:, :8]
    assert not gemm_(x, x, buf, 2)
    _gemm.matmul(x.copy(), x.copy(), buf)
    np.testing.assert_allclose(buf, want, rtol=1e-5, atol=1e-5)
    # other dtypes never reach BLAS
    ints = np.arange(12).reshape(3, 4)
    got = np.empty((3, 3), ints.dtype)
    np.testing.assert_array_equal(_gemm.matmul(ints, ints.T, got), ints @ ints.T)


def test_choice_is_checked(monkeypatch):
    monkeypatch.setenv("NPVAE_GEMM", "blis")
    with pytest.raises(ValueError, match="NPVAE_GEMM='blis' is not a choice"):
        _gemm.choice()


def test_asking_for_a_provider_without_it_names_the_fix(monkeypatch):
    monkeypatch.setattr(_gemm, "_state", {})
    monkeypatch.setattr(_mkl, "candidates", lambda: [])
    monkeypatch.setenv("NPVAE_GEMM", "mkl")
    with pytest.raises(RuntimeError, match="pip install mkl"):
        _gemm.provider()
    monkeypatch.setattr(_openblas, "_private", {})
    monkeypatch.setattr(_openblas, "private_library", lambda: None)
    monkeypatch.setenv("NPVAE_GEMM", "openblas")
    with pytest.raises(RuntimeError, match="pip install scipy-openblas32"):
        _gemm.provider()
    monkeypatch.setenv("NPVAE_GEMM", "auto")
    found, why = _gemm.provider()
    assert found is None and "no libmkl_rt" in why and "scipy-openblas32" in why
    assert _gemm.info()["provider"] == "numpy"
    out = np.empty((2, 2))
    np.testing.assert_array_equal(_gemm.matmul(np.eye(2), np.ones((2, 2)), out), np.ones((2, 2)))


def test_numpy_choice_keeps_np_dot(monkeypatch):
    monkeypatch.setattr(_gemm, "_state", {})
    monkeypatch.setenv("NPVAE_GEMM", "numpy")
    assert _gemm.provider() == (None, "NPVAE_GEMM=numpy")


@needs_mkl
@pytest.mark.parametrize("how", ["loaded", "threaded"])
def test_mkl_of_another_library_is_left_alone(how):
    """An MKL already in the process (conda's NumPy links one) keeps its settings: npvae
    does not use it. ``threaded``: the same library set up with MKL's own threads where
    the process's mappings cannot be read."""
    code = (
        "import ctypes\n"
        "from npvae.plumbing import mkl as _mkl\n"
        "lib = ctypes.CDLL(str(_mkl.candidates()[0]))\n"
        "lib.MKL_Set_Threading_Layer.argtypes = [ctypes.c_int]\n"
        "lib.MKL_Set_Threading_Layer(0)\n"  # INTEL: MKL's own OpenMP threads
        + ("_mkl.loaded_already = lambda: []\n" if how == "threaded" else "")
        + "found, why = _mkl.load()\n"
        "print(found is None, why)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("True ")
    assert ("threads of its own" if how == "threaded" else "already loaded") in res.stdout


@pytest.mark.skipif(USED is None, reason=f"np.dot is used here: {WHY}")
def test_a_forked_child_runs_gemms_without_the_split():
    """GNU OpenMP aborts a forked child that starts a parallel region; a child's GEMMs must
    still work (its small batches' kernels are serial)."""
    code = (
        "import os, numpy as np\n"
        "from npvae.kernels import get_kernels\n"
        "k = get_kernels('numba')\n"
        "a = np.random.default_rng(0).standard_normal((128, 784)).astype(np.float32)\n"
        "b = np.random.default_rng(1).standard_normal((784, 400)).astype(np.float32)\n"
        "c = np.empty((128, 400), np.float32)\n"
        "ref = k.matmul(a, b, c).copy()  # the parent has split a GEMM over the pool\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os._exit(0 if np.allclose(k.matmul(a, b, c), ref, rtol=1e-5, atol=1e-3) else 1)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "print(os.waitstatus_to_exitcode(status))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["0"], res.stderr


def test_thread_count_follows_numba():
    import numba

    have = numba.get_num_threads()
    assert _gemm.thread_count() == have
    try:
        numba.set_num_threads(1)
        assert _gemm.thread_count() == 1
    finally:
        numba.set_num_threads(have)
    assert _gemm.thread_count() == have


@pytest.mark.skipif(FOUND["openblas"][0] is None, reason=f"{FOUND['openblas'][1]}")
def test_numpys_threaded_products_stay_right_while_npvae_multiplies():
    """npvae's OpenBLAS is a library of its own: NumPy's threaded products in another
    Python thread stay exact while npvae's split GEMM runs (with NumPy's own copy called
    the same way, hundreds of them were wrong in three seconds)."""
    import threading

    rng = np.random.default_rng(2)
    pairs = [(rng.standard_normal((256, 784)).astype(np.float32),
              rng.standard_normal((784, 400)).astype(np.float32)) for _ in range(2)]
    expected = [np.dot(a, b) for a, b in pairs]
    wrong, stop = [], threading.Event()

    def work():
        while not stop.is_set():
            for (a, b), e in zip(pairs, expected, strict=True):
                if not np.array_equal(np.dot(a, b), e):
                    wrong.append(a.shape)

    a = rng.standard_normal((128, 784)).astype(np.float32)
    b = rng.standard_normal((784, 400)).astype(np.float32)
    out = np.empty((128, 400), np.float32)
    assert split_gemm("openblas", a, b, out, 2)
    ref = out.copy()
    thread = threading.Thread(target=work)
    thread.start()
    try:
        mine = sum(not (split_gemm("openblas", a, b, out, 2) and np.array_equal(out, ref))
                   for _ in range(1500))
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not wrong and mine == 0


def test_npvaes_openblas_runs_on_one_thread_and_is_not_shared():
    """Loaded once, set to one thread; an already loaded copy (someone else's) is left
    alone (tested in a subprocess that loads it first)."""
    found, why = _openblas.load_private()
    if found is None:
        pytest.skip(why)
    assert _openblas.load_private()[0] is found
    get = found._lib.scipy_openblas_get_num_threads
    assert get() == 1
    code = ("import ctypes\n"
            "from npvae.plumbing import openblas\n"
            "ctypes.CDLL(str(openblas.private_library()))\n"
            "print(openblas.load_private()[1])\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert "already loaded in this process" in res.stdout


def test_a_thread_count_set_from_outside_is_put_back_before_a_product():
    """threadpoolctl's ``threadpool_limits(n)`` reaches npvae's OpenBLAS like any other;
    with two threads in it, the split GEMM ran 80x slower. The next product sets it back."""
    found, why = _openblas.load_private()
    if found is None or _gemm.provider()[0] is not found:
        pytest.skip(why or "npvae's GEMMs do not run on its own OpenBLAS here")
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((64, 96)), rng.standard_normal((96, 80))
    found._set_threads(2)  # what threadpool_limits(2) does to it
    assert found.threads() == 2
    out = _gemm.matmul(a, b, np.empty((64, 80)))
    assert found.threads() == 1
    np.testing.assert_allclose(out, a @ b, rtol=1e-12, atol=1e-12)
