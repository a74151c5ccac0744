"""What changes over, or bounds, a training run besides the data: the learning-rate
schedules (:func:`lr_factor`) and the thread limits (:func:`thread_limits`)."""

from __future__ import annotations

import math
from contextlib import ExitStack, contextmanager

from npvae.core import checks as chk

__all__ = ["LR_SCHEDULES", "lr_factor", "thread_limits"]

LR_SCHEDULES = (None, "cosine", "step", "exponential")


def lr_factor(schedule, step, total):
    r"""Multiplier of the base learning rate at (0-based) ``step`` of ``total`` steps.

    * ``None``: 1.
    * ``"cosine"``: :math:`\tfrac12 (1 + \cos(\pi t / T))`, from 1 down to 0 at the end.
    * ``"step"``: 1, then 0.1 from 50 % of the steps, then 0.01 from 75 %.
    * ``"exponential"``: :math:`0.01^{t/T}`, smoothly down to 1 % at the end.
    * a callable ``f(step, total) -> factor``.
    """
    if schedule is None:
        return 1.0
    if callable(schedule):
        factor = schedule(step, total)
        try:
            return chk.nonnegative_float(factor, "lr_schedule(step, total)")
        except (TypeError, ValueError):
            raise TypeError(f"lr_schedule(step, total) returned {factor!r:.60} at step {step}; "
                            "it must return the learning-rate multiplier, a finite number "
                            ">= 0") from None
    frac = step / max(total, 1)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * frac))
    if schedule == "step":
        return 1.0 if frac < 0.5 else (0.1 if frac < 0.75 else 0.01)
    return 0.01 ** frac


@contextmanager
def thread_limits(threads):
    """Cap BLAS threads (with threadpoolctl, if installed) and Numba threads to ``threads``
    for the duration of the block; ``None`` changes nothing."""
    if threads is None:
        yield
        return
    with ExitStack() as stack:
        try:
            from threadpoolctl import threadpool_limits
            stack.enter_context(threadpool_limits(limits=threads))
        except ImportError:  # BLAS then uses its own default (OMP_NUM_THREADS etc.)
            pass
        try:
            import numba
            old = numba.get_num_threads()
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            stack.callback(numba.set_num_threads, old)
        except ImportError:
            pass
        yield
