"""The Adam kernels' flush-to-zero mode (npvae.plumbing.fpmode) stays inside their loops:
every thread's floating-point mode is as before once a kernel returns, and subnormal
numbers still work everywhere else."""

import numpy as np
import pytest

pytest.importorskip("numba")
from numba import njit, prange  # noqa: E402

from npvae.kernels import _numba, _reference
from npvae.plumbing import fpmode as _fpmode  # noqa: E402

needs_x86 = pytest.mark.skipif(  # the kernels flush by the CPU's mode only when it is on
    not _fpmode.AVAILABLE or not _numba.FTZ, reason="MXCSR is x86's, and the piece is on")
TINY = np.finfo(np.float32).tiny
FLAGS = 0x3F  # MXCSR's sticky exception flags: they differ by each thread's history


@njit
def mode_here():
    return _fpmode.fp_mode()


@njit
def mode_inside_flush():
    old = _fpmode.flush_to_zero()
    inside = _fpmode.fp_mode()
    _fpmode.restore_fp_mode(old)
    return inside


@njit(parallel=True)
def modes_and_subnormals(out, x):
    """Per iteration (spread over the pool's threads): the thread's MXCSR, and
    ``x * 0.5`` for a float32 ``x`` whose half is subnormal."""
    for i in prange(out.shape[0]):
        out[i, 0] = _fpmode.fp_mode()
        out[i, 1] = np.float64(x[i] * np.float32(0.5))


def adam_state(n, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    m = np.full(n, TINY * 1.05, np.float32)  # decays below tiny in one step
    v = np.zeros(n, np.float32)
    return p, g, m, v


@needs_x86
def test_flush_to_zero_sets_and_restores_the_mode():
    before = mode_here()
    assert before & _fpmode.FTZ_DAZ == 0  # Python's default: subnormals on
    assert mode_inside_flush() == before | _fpmode.FTZ_DAZ
    assert mode_here() == before


@needs_x86
@pytest.mark.parametrize("size", [1000, 1 << 18])  # the serial loop, and the prange twin
def test_adam_leaves_every_thread_as_it_was(size):
    before = mode_here()
    p, g, m, v = adam_state(size)
    args = (1e-3, 0.9, 0.999, 1e-8, 0.1, 0.001, 0.0, 1.0)
    _numba.adam_step(p, g, m, v, *args)
    w, x, delta = p[:800].reshape(40, 20), g[:40].reshape(1, 40), g[40:60].reshape(1, 20)
    _numba._adam_outer_parallel(w, x, delta, m[:800].reshape(40, 20),
                                v[:800].reshape(40, 20), *args[:-1], 8)
    assert mode_here() == before
    out = np.empty((64, 2))
    modes_and_subnormals(out, np.full(64, TINY, np.float32))
    control = out[:, 0].astype(np.int64) & ~FLAGS
    assert np.all(control == before & ~FLAGS)  # rounding, masks, FTZ/DAZ: all as before
    assert np.all(out[:, 1] == np.float32(TINY) * np.float32(0.5))  # not flushed
    assert np.float32(TINY) * np.float32(0.5) != 0  # nor in NumPy


def test_moments_flushed_as_the_reference_does():
    """m and v that fall below tiny are 0 in both backends (by the CPU's mode on x86), and
    the results agree as test_kernels.py's do (rounding: p is updated in another order)."""
    state = [adam_state(5000, seed=1) for _ in range(2)]
    args = (1e-3, 0.9, 0.999, 1e-8, 0.1, 0.001, 0.01, 1.0)
    state[0][1][::7] = 0.0  # no gradient: m decays from 1.05 tiny to below tiny
    state[1][1][::7] = 0.0
    _numba.adam_step(*state[0], *args)
    _reference.adam_step(*state[1], *args)
    for a, b in zip(state[0], state[1], strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=2e-6 * max(1.0, np.abs(b).max()))
    for m in (state[0][2], state[1][2]):
        assert np.all(m[::7] == 0)
        assert not np.any((m != 0) & (np.abs(m) < TINY))
