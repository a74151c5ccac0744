"""One flat parameter vector, one flat gradient vector, named views into both.

Every weight and bias of a model is a reshaped *view* into ``ParamBuffer.data`` and its
gradient the view with the same offset into ``ParamBuffer.grad``. The optimizer therefore
updates the whole model as one contiguous 1-D array in a single loop (llm.c's
``malloc_and_point_parameters``; scikit-learn's ``_unpack``, without ever packing).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

__all__ = ["ParamBuffer", "staggered_zeros"]

PAGE = 4096  # bytes
STAGGER = 1024  # bytes between the page offsets of the buffers an optimizer streams through


def staggered_zeros(size, dtype, slot):
    """Zeros of length ``size`` that start ``slot * 1024`` bytes past a 4 KiB boundary.

    Adam reads and writes the parameters, gradients and both moments in one loop. Large
    buffers all start at the same offset in a page, and the CPU then takes a load from one
    for a dependence on a store to another with the same low address bits ("4K
    aliasing"): Adam over the bench model's 652,824 parameters took 320-330 us against
    280 us with the buffers 1 KiB apart (warm caches; 8% with cold ones). So the
    parameter buffer (slot 0), its gradient (1) and the optimizer's state (2, 3) are
    allocated with this.
    """
    dtype = np.dtype(dtype)
    raw = np.zeros(int(size) + (PAGE + STAGGER * slot) // dtype.itemsize, dtype)
    start = ((-raw.ctypes.data) % PAGE + STAGGER * slot) // dtype.itemsize
    return raw[start:start + int(size)]


class ParamBuffer:
    """Flat, contiguous storage for named parameters and their gradients.

    Parameters
    ----------
    shapes : dict of str to tuple of int
        Name and shape of every parameter, in buffer order.
    dtype : numpy dtype, default float32
        float32 or float64.

    Attributes
    ----------
    data, grad : ndarray of shape (size,)
        The flat parameter and gradient vectors. Same layout: the parameter called
        ``name`` occupies ``data[offset:offset + prod(shape)]`` in row-major (C) order.

    Notes
    -----
    Layout: parameters are stored in the order given, each in C order. A Dense weight is
    ``(in, out)`` so that a layer computes ``y = x @ W + b``. ``view(name)`` and
    ``grad_view(name)`` never copy: writing into them changes the buffers.
    """

    def __init__(self, shapes, dtype=np.float32):
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dtype}; pass dtype=np.float32")
        self.dtype = dtype
        self.shapes = OrderedDict()
        self.offsets = OrderedDict()
        size = 0
        for name, shape in shapes.items():
            shape = tuple(int(s) for s in shape)
            if name in self.shapes:
                raise ValueError(f"duplicate parameter name {name!r}")
            if any(s < 0 for s in shape):
                raise ValueError(f"parameter {name!r} has a negative dimension {shape}")
            self.shapes[name] = shape
            self.offsets[name] = size
            size += int(np.prod(shape, dtype=np.int64))
        self.size = size
        self._slices = OrderedDict(  # fixed with the layout; the optimizer asks every step
            (name, slice(start, start + int(np.prod(self.shapes[name], dtype=np.int64))))
            for name, start in self.offsets.items())
        self.data = staggered_zeros(size, dtype, 0)  # apart in the page: see staggered_zeros
        self.grad = staggered_zeros(size, dtype, 1)

    def _slice(self, flat, name):
        if name not in self.shapes:
            raise KeyError(f"no parameter named {name!r}; known: {', '.join(self.shapes)}")
        return flat[self._slices[name]].reshape(self.shapes[name])

    def view(self, name):
        """The parameter ``name`` as a view into :attr:`data`."""
        return self._slice(self.data, name)

    def grad_view(self, name):
        """The gradient of ``name`` as a view into :attr:`grad`."""
        return self._slice(self.grad, name)

    def named(self):
        """Ordered dict of every parameter name to its view into :attr:`data`."""
        return OrderedDict((name, self.view(name)) for name in self.shapes)

    def named_grads(self):
        """Ordered dict of every parameter name to its view into :attr:`grad`."""
        return OrderedDict((name, self.grad_view(name)) for name in self.shapes)

    def block_slices(self):
        """Ordered dict of every parameter name to its ``slice`` of the flat vectors."""
        return OrderedDict(self._slices)

    def load(self, arrays):
        """Copy named arrays into the buffer, checking names and shapes first.

        Parameters
        ----------
        arrays : mapping of str to array_like
            Must hold exactly the parameter names of this buffer.
        """
        missing = [n for n in self.shapes if n not in arrays]
        extra = [n for n in arrays if n not in self.shapes]
        if missing or extra:
            raise ValueError(
                f"parameter names do not match: missing {missing}, unexpected {extra}"
            )
        for name, shape in self.shapes.items():
            a = np.asarray(arrays[name])
            if a.shape != shape:
                raise ValueError(f"parameter {name!r}: expected shape {shape}, got {a.shape}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"parameter {name!r} contains NaN or inf")
        for name in self.shapes:
            self.view(name)[...] = arrays[name]

    def __getstate__(self):
        # pickle/deepcopy: the values, not the over-allocated staggered blocks they sit in
        state = self.__dict__.copy()
        state["data"], state["grad"] = np.array(self.data), np.array(self.grad)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        for slot, key in enumerate(("data", "grad")):  # staggered again, as in __init__
            values = state[key]
            setattr(self, key, staggered_zeros(values.size, values.dtype, slot))
            getattr(self, key)[...] = values

    def __len__(self):
        return self.size

    def __repr__(self):
        return f"ParamBuffer({len(self.shapes)} arrays, {self.size} values, {self.dtype})"
