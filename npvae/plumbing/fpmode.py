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

import platform

from llvmlite import ir
from numba import types
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
