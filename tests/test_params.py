"""The flat buffer: views not copies, a stated layout, round trips by name."""

import numpy as np
import pytest

from npvae.core.model import VAEModel
from npvae.core.params import ParamBuffer


def test_views_share_memory_with_the_flat_buffers():
    p = ParamBuffer({"W": (2, 3), "b": (3,)}, np.float64)
    assert np.shares_memory(p.view("W"), p.data) and np.shares_memory(p.grad_view("b"), p.grad)
    p.view("W")[1, 2] = 5.0
    assert p.data[5] == 5.0  # row-major: W[1, 2] is entry 1 * 3 + 2
    p.grad_view("b")[0] = 7.0
    assert p.grad[6] == 7.0
    assert p.size == 9 and p.data.flags.c_contiguous


def test_model_layout_is_documented_order_and_shapes():
    m = VAEModel(784, 20, hidden=(400,), likelihood="gaussian-diag")
    shapes = {k: v.shape for k, v in m.named_parameters().items()}
    assert list(shapes) == ["encoder.0.W", "encoder.0.b", "encoder.out.W", "encoder.out.b",
                            "decoder.0.W", "decoder.0.b", "decoder.out.W", "decoder.out.b",
                            "likelihood.logvar"]
    assert shapes["encoder.0.W"] == (784, 400) and shapes["encoder.out.W"] == (400, 40)
    assert shapes["decoder.out.W"] == (400, 784) and shapes["likelihood.logvar"] == (784,)
    assert m.params.size == sum(int(np.prod(s)) for s in shapes.values())


def test_weights_copy_in_and_out_by_name():
    a = VAEModel(6, 2, hidden=(5,), seed=1)
    b = VAEModel(6, 2, hidden=(5,), seed=2)
    x = np.random.default_rng(0).random((3, 6))
    assert not np.allclose(a.encode(x)[0], b.encode(x)[0])
    b.params.load({k: v.copy() for k, v in a.named_parameters().items()})
    np.testing.assert_array_equal(a.encode(x)[0], b.encode(x)[0])


def test_same_seed_same_weights_different_seed_different():
    a, b, c = (VAEModel(6, 2, hidden=(5,), seed=s) for s in (3, 3, 4))
    assert np.array_equal(a.params.data, b.params.data)
    assert not np.array_equal(a.params.data, c.params.data)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [0, 1, 1000, 652824])
def test_staggered_zeros_start_apart_in_the_page(dtype, size):
    from npvae.core.params import PAGE, STAGGER, staggered_zeros

    for slot in range(4):
        a = staggered_zeros(size, dtype, slot)
        assert a.shape == (size,) and a.dtype == dtype and a.flags.c_contiguous
        assert not a.any()
        if size:  # an empty array's address means nothing
            assert a.ctypes.data % PAGE == STAGGER * slot


def test_optimizer_streams_start_apart_in_the_page():
    """Adam's loop streams parameters, gradients and both moments (see staggered_zeros)."""
    from npvae import VAE, Adam

    model = VAE(12, 2, hidden=(5,), seed=0)
    opt = Adam(model.params)
    offsets = {a.ctypes.data % 4096 for a in (model.params.data, model.params.grad, opt.m,
                                              opt.v)}
    assert len(offsets) == 4
