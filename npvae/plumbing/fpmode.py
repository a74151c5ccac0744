"""Flush-to-zero for the length of a kernel loop (x86's FTZ and DAZ bits in MXCSR).

Arithmetic on subnormal numbers is tens of times slower on x86. Adam's moments of a
parameter whose gradient has become 0 decay through the subnormal range, so the reference
flushes every ``m`` and ``v`` entry below ``tiny`` to 0 (see
:func:`npvae.kernels._reference.flush_limits`). Written out, those two compares and
selects cost 11-13% of a whole training step at batch 1 (measured in the compiled loops;
2% at batch 128). The CPU
can do the same for free: with FTZ a subnormal result is stored as 0, with DAZ a
subnormal input is read as 0. So the Adam kernels set both bits on entry, on the thread
that runs the loop (each thread has its own MXCSR), and put the old value back on exit:
nothing outside the loop sees the mode, and the sticky exception flags raised inside the
loop are dropped with it.

The results can differ from the reference's by less than ``tiny`` (1.2e-38 in float32)
per operation: FTZ also flushes intermediate products (``beta1 * m`` before the sum),
which the reference keeps. Off x86 (:data:`AVAILABLE` is False) the kernels flush ``m``
and ``v`` by compares, as the reference does.
"""

from __future__ import annotations

import os
import platform

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

AVAILABLE = platform.machine().lower() in ("x86_64", "amd64")
FTZ_DAZ = 0x8040  # MXCSR bit 15 (flush to zero) and bit 6 (denormals are zero)


def _mxcsr(builder, name, slot):
    i8p = ir.IntType(8).as_pointer()
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p]),
                                        f"llvm.x86.sse.{name}")
    builder.call(fn, [builder.bitcast(slot, i8p)])


@intrinsic
def flush_to_zero(typingctx):
    """Set FTZ and DAZ on this thread; return the previous MXCSR (0 off x86)."""
    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        if not AVAILABLE:
            return ir.Constant(ir.IntType(64), 0)
        slot = cgutils.alloca_once(builder, i32)
        _mxcsr(builder, "stmxcsr", slot)
        old = builder.load(slot)
        builder.store(builder.or_(old, ir.Constant(i32, FTZ_DAZ)), slot)
        _mxcsr(builder, "ldmxcsr", slot)
        return builder.zext(old, ir.IntType(64))

    return types.int64(), codegen


@intrinsic
def restore_fp_mode(typingctx, old):
    """Put back the MXCSR value :func:`flush_to_zero` returned."""
    def codegen(context, builder, signature, args):
        if AVAILABLE:
            slot = cgutils.alloca_once(builder, ir.IntType(32))
            builder.store(builder.trunc(args[0], ir.IntType(32)), slot)
            _mxcsr(builder, "ldmxcsr", slot)
        return context.get_dummy_value()

    return types.void(types.int64), codegen


@intrinsic
def fp_mode(typingctx):
    """This thread's MXCSR (0 off x86), for tests."""
    def codegen(context, builder, signature, args):
        if not AVAILABLE:
            return ir.Constant(ir.IntType(64), 0)
        slot = cgutils.alloca_once(builder, ir.IntType(32))
        _mxcsr(builder, "stmxcsr", slot)
        return builder.zext(builder.load(slot), ir.IntType(64))

    return types.int64(), codegen


def self_test():
    """Raise RuntimeError unless, in compiled code, :func:`flush_to_zero` flushes a
    subnormal product to 0 and :func:`restore_fp_mode` gives the thread its mode back."""
    tiny = np.finfo(np.float32).tiny
    modes, out = np.zeros(3, np.int64), np.full(2, np.nan, np.float32)
    _flush_check(np.full(2, tiny, np.float32), out, modes)
    if not (modes[1] & FTZ_DAZ == FTZ_DAZ and modes[2] == modes[0] and out[0] == 0
            and out[1] == np.float32(tiny) * np.float32(0.5) != 0):
        raise RuntimeError(f"the MXCSR flush-to-zero switch did not work as tested (modes "
                           f"{[hex(int(m)) for m in modes]}, products {out.tolist()})")


@njit(cache=os.environ.get("NPVAE_NUMBA_CACHE", "1") != "0")
def _flush_check(x, out, modes):
    """``out[0] = x[0] / 2`` inside the flush, ``out[1] = x[1] / 2`` after it; the modes
    before, inside and after."""
    half = x.dtype.type(0.5)
    modes[0] = fp_mode()
    old = flush_to_zero()
    modes[1] = fp_mode()
    out[0] = x[0] * half
    restore_fp_mode(old)
    modes[2] = fp_mode()
    out[1] = x[1] * half
