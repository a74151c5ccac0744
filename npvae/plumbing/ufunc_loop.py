"""NumPy's own SIMD loop of a unary ufunc (``np.exp``), called from inside Numba kernels.

Numba compiles ``np.exp`` to a scalar libm call per value; NumPy's float32 ``exp`` loop is
SIMD (AVX-512 on the bench machine), about 20x faster per value. Calling ``np.exp`` between
two Numba kernels costs a pass over memory and runs on one thread. So the kernels call
NumPy's loop themselves, on the rows they are working on, inside their own ``prange``.

NumPy hands its loops out for this (an experimental API since 1.24, meant for Numba and
Cython): ``ufunc._resolve_dtypes_and_context`` returns a capsule, and
``ufunc._get_strided_loop`` fills it with the C loop, its context and its auxdata. The loop
has the stable signature::

    int loop(PyArrayMethod_Context *context, char *const data[2],
             const npy_intp dimensions[1], const npy_intp strides[2], NpyAuxData *auxdata)

:func:`unary_loop` returns ``(loop, context, auxdata)`` as three integers, which a kernel
takes as an argument (so the compiled code stays cacheable) and passes to
:func:`call_unary`. If NumPy does not offer the loop (the API changed, or it needs the
GIL) it returns :data:`NO_LOOP`, and the kernels fall back to Numba's scalar ``np.exp``:
slower, the same results to an ulp.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

NO_LOOP = (0, 0, 0)
_CAPSULE = b"numpy_1.24_ufunc_call_info"
_found = {}  # (ufunc, dtype as given) -> (loop triple, capsule kept alive: owns auxdata, why)


def unary_loop(ufunc, dtype):
    """``(loop, context, auxdata)`` addresses of NumPy's loop of ``ufunc`` for ``dtype``,
    or :data:`NO_LOOP` if NumPy does not offer it. Cached: kernels ask on every call."""
    found = _found.get((ufunc, dtype))
    if found is None:
        found = _found[(ufunc, dtype)] = _find(ufunc, np.dtype(dtype))
    return found[0]


def why_not(ufunc, dtype):
    """Why :func:`unary_loop` gives :data:`NO_LOOP` for ``ufunc`` and ``dtype``, or None."""
    unary_loop(ufunc, dtype)
    return _found[(ufunc, dtype)][2]


def _find(ufunc, dt):
    try:
        _, info = ufunc._resolve_dtypes_and_context((dt, dt))
        ufunc._get_strided_loop(info)  # no fixed strides: strided rows are called too
        get = ctypes.pythonapi.PyCapsule_GetPointer
        get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
        base = get(info, _CAPSULE)  # raises ValueError if the layout's name changed
    except (AttributeError, TypeError, ValueError) as exc:
        return NO_LOOP, None, f"NumPy {np.__version__} does not hand out its loops: {exc}"
    words = ctypes.cast(base, ctypes.POINTER(ctypes.c_void_p))
    loop, context, auxdata = words[0], words[1], words[2] or 0
    requires_pyapi = ctypes.cast(base + 3 * ctypes.sizeof(ctypes.c_void_p),
                                 ctypes.POINTER(ctypes.c_ubyte))[0]
    if not loop or not context or requires_pyapi:
        return NO_LOOP, None, f"NumPy's {ufunc.__name__} loop for {dt} needs the GIL"
    return (loop, context, auxdata), info, None


def self_test():
    """Raise RuntimeError unless NumPy's float32 and float64 ``exp`` loops, called from
    compiled code, give ``np.exp``'s values bit for bit (contiguous and strided)."""
    for dt in (np.float32, np.float64):
        why = why_not(np.exp, dt)
        if why is not None:
            raise RuntimeError(why)
        a = np.linspace(-20, 20, 64, dtype=dt).reshape(4, 16)
        want = np.exp(a)
        _exp_in_place(unary_loop(np.exp, dt), a, 16, a.itemsize)
        strided = np.linspace(-3, 3, 48, dtype=dt)
        want_strided = np.exp(strided[::3])
        _exp_in_place(unary_loop(np.exp, dt), strided, 16, 3 * strided.itemsize)
        if not (np.array_equal(a[0], want[0]) and np.array_equal(strided[::3], want_strided)):
            raise RuntimeError(f"NumPy's exp loop for {np.dtype(dt)} gave other values "
                               "than np.exp when called from a kernel")


@intrinsic
def call_unary(typingctx, loop, src, dst, n, stride):
    """Run the loop ``loop`` (a triple from :func:`unary_loop`) over ``n`` values from the
    address ``src`` into ``dst``, both ``stride`` bytes apart (``src == dst`` is allowed)."""
    def codegen(context, builder, signature, args):
        triple, src_, dst_, n_, stride_ = args
        i32, i64, i8p = ir.IntType(32), ir.IntType(64), ir.IntType(8).as_pointer()
        fn_, ctx_, aux_ = (builder.extract_value(triple, i) for i in range(3))
        # in the function's entry block: an alloca inside a loop would grow the stack
        # with every call (one call per row for strided rows)
        data = cgutils.alloca_once(builder, i8p, size=2)
        dims = cgutils.alloca_once(builder, i64, size=1)
        strides = cgutils.alloca_once(builder, i64, size=2)
        builder.store(builder.inttoptr(src_, i8p), data)
        builder.store(builder.inttoptr(dst_, i8p), builder.gep(data, [ir.Constant(i32, 1)]))
        builder.store(n_, dims)
        builder.store(stride_, strides)
        builder.store(stride_, builder.gep(strides, [ir.Constant(i32, 1)]))
        fnty = ir.FunctionType(i32, [i8p, i8p.as_pointer(), i64.as_pointer(),
                                     i64.as_pointer(), i8p])
        fn = builder.inttoptr(fn_, fnty.as_pointer())
        # exp's loops cannot fail (they return -1 only for an error set with the GIL)
        builder.call(fn, [builder.inttoptr(ctx_, i8p), data, dims, strides,
                          builder.inttoptr(aux_, i8p)])
        return context.get_dummy_value()

    sig = types.void(types.UniTuple(types.intp, 3), types.intp, types.intp, types.intp,
                     types.intp)
    return sig, codegen


@njit(cache=os.environ.get("NPVAE_NUMBA_CACHE", "1") != "0")
def _exp_in_place(loop, a, n, stride):
    """``exp`` of ``n`` values of ``a`` from its first one, ``stride`` bytes apart."""
    call_unary(loop, a.ctypes.data, a.ctypes.data, n, stride)
