"""NumPy's exp loop called from Numba (npvae.plumbing.ufunc_loop) gives np.exp's values bit
for bit, on rows in one run of memory and on strided ones."""

import gc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.strategies import seeds

pytest.importorskip("numba")
from numba import njit  # noqa: E402

from npvae.kernels import _numba
from npvae.plumbing import ufunc_loop as _ufunc_loop  # noqa: E402

if _numba._parts.tag.count("exp"):  # the kernels were compiled with the plain stand-in
    pytest.skip("NumPy's exp loop is off (npvae.plumbing.capabilities())",
                allow_module_level=True)

SPECIAL = [0.0, -0.0, 1.0, -1.0, 88.0, 89.0, -87.0, -104.0, -1e30, 1e30, 700.0, 710.0,
           -745.0, np.inf, -np.inf, np.nan, 1e-40, -1e-40]


@njit
def exp_rows(loop, a):
    _numba._exp_rows(loop, a, 0, a.shape[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(rows=st.integers(1, 5), cols=st.integers(1, 70), seed=seeds,
       scale=st.sampled_from([1.0, 10.0, 100.0]), strided=st.booleans())
def test_exp_loop_matches_numpy_bit_for_bit(dtype, rows, cols, seed, scale, strided):
    rng = np.random.default_rng(seed)
    wide = (rng.standard_normal((rows, 2 * cols)) * scale).astype(dtype)
    flat = wide.ravel()
    flat[rng.integers(0, flat.size, 3)] = rng.choice(np.array(SPECIAL, dtype), 3)
    a = wide[:, ::2] if strided else wide[:, :cols].copy()
    assert a.flags.c_contiguous == (not strided or a.size == 1)
    others = wide[:, 1::2].copy()
    with np.errstate(all="ignore"):
        want = np.exp(a)
    loop = _ufunc_loop.unary_loop(np.exp, dtype)
    assert loop != _ufunc_loop.NO_LOOP
    exp_rows(loop, a)
    np.testing.assert_array_equal(a, want)
    if strided:
        np.testing.assert_array_equal(wide[:, 1::2], others)  # the columns between untouched


def test_loop_is_found_once_and_outlives_garbage_collection():
    loop = _ufunc_loop.unary_loop(np.exp, np.float32)
    gc.collect()
    assert _ufunc_loop.unary_loop(np.exp, np.float32) is loop
    a = np.linspace(-5, 5, 33, dtype=np.float32).reshape(3, 11)
    want = np.exp(a)
    exp_rows(loop, a)
    np.testing.assert_array_equal(a, want)


class NoLoopAPI:
    __name__ = "exp_without_api"


class OtherCapsule:
    """A ufunc whose call-info capsule carries a name this module does not know."""
    __name__ = "exp_other_capsule"

    def _resolve_dtypes_and_context(self, dtypes):
        import ctypes

        make = ctypes.pythonapi.PyCapsule_New
        make.restype, make.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_char_p,
                                                         ctypes.c_void_p]
        self.buf = ctypes.create_string_buffer(64)
        return dtypes, make(ctypes.addressof(self.buf), b"numpy_9.99_ufunc_call_info", None)

    def _get_strided_loop(self, info, fixed_strides=None):
        pass


@pytest.mark.parametrize("ufunc", [NoLoopAPI(), OtherCapsule()])
def test_no_loop_when_numpy_does_not_offer_it(ufunc):
    assert _ufunc_loop.unary_loop(ufunc, np.float32) == _ufunc_loop.NO_LOOP


def test_overflow_inside_a_kernel_leaves_no_error_for_later_numpy_calls():
    """The loop may set the CPU's overflow flag (NumPy checks it only around its own
    calls); later NumPy calls must not report it as theirs."""
    from npvae.kernels import get_kernels

    h = np.full((4, 4), 400.0, np.float32)  # logvar 400: std = e^200, inf in float32
    z, kl = np.empty((4, 2), np.float32), np.empty(2, np.float32)
    get_kernels("numba").sample_kl(h, np.ones((4, 2), np.float32), z, kl)
    assert np.all(np.isinf(z)) and np.all(np.isinf(kl))
    with np.errstate(all="raise"):
        np.testing.assert_array_equal(np.ones(64, np.float32) * 2, 2.0)


def test_strided_rows_do_not_grow_the_stack():
    """One loop call per strided row: its argument arrays live in the kernel's entry block.
    Allocated at each call instead, 3 million rows would overflow the stack (a crash, so
    this runs in a subprocess)."""
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from numba import njit\n"
        "from npvae.kernels import _numba\n"
        "from npvae.plumbing import ufunc_loop as _ufunc_loop\n"
        "@njit\n"
        "def exp_rows(loop, a):\n"
        "    _numba._exp_rows(loop, a, 0, a.shape[0])\n"
        "wide = np.zeros((3_000_000, 2), np.float32)\n"
        "exp_rows(_ufunc_loop.unary_loop(np.exp, np.float32), wide[:, :1])\n"
        "assert np.all(wide[:, 0] == 1) and np.all(wide[:, 1] == 0)\n"
        "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
