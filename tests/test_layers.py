"""Gradient checks for every activation, the Dense layer and the MLP (float64, central
differences), plus exact checks of the ReLU-family masks at and around the kink."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from npvae.core.gradcheck import check_vjp, numerical_vjp, rel_error
from npvae.core.layers import MLP, Dense
from npvae.core.params import ParamBuffer
from tests.cases import ACTIVATIONS, DIFFERENTIABLE_NAMES, is_kinked
from tests.strategies import arrays, batch, seeds, width

TOL = 1e-6
ids = [repr(a) for a in ACTIVATIONS]


def away_from_kink(act, a, h=1e-6):
    return not is_kinked(act) or np.min(np.abs(a)) > 1e4 * h


# ----------------------------------------------------------------------------- activations
@pytest.mark.parametrize("act", ACTIVATIONS, ids=ids)
@given(a=arrays(st.tuples(batch, width), lo=-6, hi=6), seed=seeds)
def test_activation_backward_matches_finite_differences(act, a, seed):
    assume(away_from_kink(act, a))
    rng = np.random.default_rng(seed)
    y = act.forward(a)
    u = rng.standard_normal(a.shape)
    numeric = numerical_vjp(act.forward, a.copy(), u)
    assert rel_error(act.backward(u, act.saved(a, y)), numeric) <= TOL


@pytest.mark.parametrize("act", ACTIVATIONS, ids=ids)
def test_activation_is_finite_at_extremes(act):
    a = np.array([[-1e4, -50.0, 0.0, 50.0, 1e4]])
    for dt in (np.float32, np.float64):
        y = act.forward(a.astype(dt))
        d = act.derivative(act.saved(a.astype(dt), y))
        assert np.all(np.isfinite(y)) and np.all(np.isfinite(d))


def test_relu_family_masks_are_exact():
    from npvae.core.activations import LeakyReLU, ReLU

    a = np.array([[-2.0, -1e-300, 0.0, 1e-300, 3.0]])
    np.testing.assert_array_equal(ReLU().derivative(ReLU().forward(a)), [[0, 0, 0, 1, 1]])
    lk = LeakyReLU(0.2)
    np.testing.assert_array_equal(lk.derivative(lk.forward(a)), [[0.2, 0.2, 0.2, 1, 1]])


# ----------------------------------------------------------------------------------- Dense
def make_dense(n_in, n_out, act, seed):
    layer = Dense(n_in, n_out, act, name="d")
    params = ParamBuffer(layer.param_shapes(), np.float64)
    layer.bind(params)
    rng = np.random.default_rng(seed)
    layer.initialize(rng)
    layer.b[...] = rng.standard_normal(n_out)  # a nonzero bias exercises db
    return layer, params


@pytest.mark.parametrize("act", ACTIVATIONS, ids=ids)
@given(n=batch, n_in=width, n_out=width, seed=seeds)
def test_dense_gradients_directional(act, n, n_in, n_out, seed):
    layer, params = make_dense(n_in, n_out, act, seed)
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((n, n_in))
    assume(away_from_kink(act, x @ layer.W + layer.b))
    y = layer.forward(x)

    def backward(u):
        return layer.backward(u.copy(), x, y)

    assert check_vjp(lambda x_: layer.forward(x_), backward, x, rng) <= TOL

    def f_params(theta):
        old = params.data.copy()
        params.data[...] = theta
        out = layer.forward(x)
        params.data[...] = old
        return out

    def vjp_params(u):
        layer.backward(u.copy(), x, y)
        return params.grad.copy()

    assert check_vjp(f_params, vjp_params, params.data.copy(), rng) <= TOL


@pytest.mark.parametrize("act", ACTIVATIONS, ids=ids)
@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 3, 2), (4, 2, 3)])
def test_dense_gradients_every_coordinate(act, shape):
    n, n_in, n_out = shape
    layer, params = make_dense(n_in, n_out, act, seed=7)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, n_in)) + 0.05  # shifted off the kink for these seeds
    assert away_from_kink(act, x @ layer.W + layer.b)
    y = layer.forward(x)
    u = rng.standard_normal(y.shape)
    dx = layer.backward(u.copy(), x, y)
    assert rel_error(dx, numerical_vjp(lambda x_: layer.forward(x_), x.copy(), u)) <= TOL

    def f_params(theta):
        params.data[...] = theta
        return layer.forward(x)

    theta = params.data.copy()
    numeric = numerical_vjp(f_params, theta.copy(), u)
    params.data[...] = theta
    assert rel_error(params.grad, numeric) <= TOL


class CountingKernels:
    """The default kernels, counting the calls of each one."""

    def __init__(self):
        from npvae.kernels import get_kernels

        self.k, self.calls = get_kernels(), {}

    def __getattr__(self, name):
        fn = getattr(self.k, name)
        if not callable(fn):
            return fn

        def counted(*args):
            self.calls[name] = self.calls.get(name, 0) + 1
            return fn(*args)
        return counted


@pytest.mark.parametrize("act", ["relu", "identity", "tanh", "silu", "gelu"])
def test_preactivation_is_kept_only_where_the_derivative_needs_it(act):
    """The pre-activation buffer exists, and bias_act_pre runs, only for the layers whose
    activation needs_pre; every layer runs its three GEMMs, none more."""
    mlp = MLP([4, 5, 3, 2], act, name="m")
    params = ParamBuffer(mlp.param_shapes(), np.float64)
    mlp.bind(params)
    mlp.initialize(np.random.default_rng(0))
    ws = mlp.workspace(3, np.float64)
    needs = mlp.layers[0].act.needs_pre
    assert [p is not None for p in ws["pres"]] == [needs, needs, False]  # out: identity
    k = CountingKernels()
    x = np.random.default_rng(1).standard_normal((3, 4))
    mlp.forward(x, ws, k)
    mlp.backward(np.ones((3, 2)), x, ws, need_dx=False, kernels=k)
    assert k.calls.get("bias_act_pre", 0) == (2 if needs else 0)
    assert k.calls.get("bias_act", 0) == (1 if needs else 3)
    assert k.calls["matmul"] == 3 + 3 + 2  # forward, weight gradients, input gradients


@pytest.mark.parametrize("act", ["silu", "gelu"])
def test_dense_backward_without_pre_recomputes_it_exactly(act):
    layer, params = make_dense(3, 4, act, seed=2)
    x = np.random.default_rng(3).standard_normal((5, 3))
    pre = np.empty((5, 4))
    y = layer.forward(x, pre=pre)
    np.testing.assert_array_equal(pre, x @ layer.W + layer.b)
    u = np.random.default_rng(4).standard_normal(y.shape)
    dx1 = layer.backward(u.copy(), x, y, pre=pre)
    g1 = params.grad.copy()
    dx2 = layer.backward(u.copy(), x, y)
    np.testing.assert_array_equal(dx1, dx2)
    np.testing.assert_array_equal(g1, params.grad)


def test_silu_and_gelu_match_their_closed_forms():
    """The two definitions against the math written out (not against themselves)."""
    from math import erf, exp, pi, sqrt, tanh

    from npvae.core.activations import GELU, SiLU

    a = np.array([-6.0, -2.5, -1.0, -0.1, 0.0, 0.3, 1.0, 4.0])
    np.testing.assert_allclose(SiLU().forward(a), [v / (1 + exp(-v)) for v in a], rtol=1e-15)
    gelu = GELU().forward(a)
    np.testing.assert_allclose(
        gelu, [0.5 * v * (1 + tanh(sqrt(2 / pi) * (v + 0.044715 * v ** 3))) for v in a],
        rtol=1e-14, atol=1e-300)
    exact = np.array([0.5 * v * (1 + erf(v / sqrt(2))) for v in a])  # x Phi(x)
    assert np.max(np.abs(gelu - exact)) < 1e-3  # the tanh form's known accuracy
    assert SiLU().needs_pre and GELU().needs_pre
    # y alone does not determine a: two pre-activations with the same SiLU output
    a2 = np.array([-0.5, -2.5088072714221807])
    y1, y2 = SiLU().forward(a2)
    d1, d2 = SiLU().derivative(a2)
    assert abs(y1 - y2) < 1e-12 and d1 > 0.2 and d2 < -0.08


def test_dense_backward_can_skip_input_gradient():
    layer, params = make_dense(3, 2, "tanh", seed=0)
    x = np.ones((2, 3))
    y = layer.forward(x)
    assert layer.backward(np.ones_like(y), x, y, need_dx=False) is None
    assert np.any(params.grad != 0)


@pytest.mark.parametrize("scheme,act", [("he", "relu"), ("glorot", "tanh")])
def test_initialisation_scale(scheme, act):
    layer = Dense(400, 300, act)
    params = ParamBuffer(layer.param_shapes(), np.float64)
    layer.bind(params)
    layer.initialize(np.random.default_rng(0), "auto")
    want = np.sqrt(2 / 400) if scheme == "he" else np.sqrt(6 / 700) / np.sqrt(3)
    assert abs(layer.W.std() / want - 1) < 0.02
    assert np.all(layer.b == 0)


# ------------------------------------------------------------------------------------- MLP
@given(
    sizes=st.lists(st.integers(1, 5), min_size=2, max_size=5),
    n=batch, act=st.sampled_from(DIFFERENTIABLE_NAMES),
    seed=seeds,
)
def test_mlp_gradients_any_depth(sizes, n, act, seed):
    mlp = MLP(sizes, act, name="m")
    params = ParamBuffer(mlp.param_shapes(), np.float64)
    mlp.bind(params)
    rng = np.random.default_rng(seed)
    mlp.initialize(rng)
    x = rng.standard_normal((n, sizes[0]))
    ws = mlp.workspace(n, np.float64)
    y = mlp.forward(x, ws).copy()

    def f(x_):
        return mlp.forward(x_, mlp.workspace(n, np.float64)).copy()

    def vjp(u):
        mlp.forward(x, ws)
        return mlp.backward(u.copy(), x, ws).copy()

    assert check_vjp(f, vjp, x, rng) <= TOL

    def f_params(theta):
        old = params.data.copy()
        params.data[...] = theta
        out = f(x)
        params.data[...] = old
        return out

    def vjp_params(u):
        mlp.forward(x, ws)
        mlp.backward(u.copy(), x, ws, need_dx=False)
        return params.grad.copy()

    assert y.shape == (n, sizes[-1])
    assert check_vjp(f_params, vjp_params, params.data.copy(), rng) <= TOL


def test_mlp_zero_hidden_layers_is_one_dense():
    mlp = MLP([5, 3], "relu", name="enc")
    assert len(mlp.layers) == 1 and mlp.layers[0].name == "enc.out"
    assert mlp.layers[0].act.name == "identity"


def test_layer_argument_errors():
    with pytest.raises(ValueError, match="sizes must be >= 1"):
        Dense(0, 3)
    with pytest.raises(ValueError, match="unknown activation"):
        Dense(2, 3, "swish")
    with pytest.raises(ValueError, match="at least input and output"):
        MLP([4])


# ------------------------------------------------------------------ input-only backward
@given(
    sizes=st.lists(st.integers(1, 5), min_size=2, max_size=5),
    n=batch, act=st.sampled_from(["tanh", "softplus", "sigmoid", "elu", "identity", "relu"]),
    seed=seeds,
)
def test_mlp_backward_input_matches_backward_and_leaves_the_gradients(sizes, n, act, seed):
    """backward_input gives backward's dx, passes a central-difference check, and writes
    nothing into the parameter-gradient buffer."""
    mlp = MLP(sizes, act, name="m")
    params = ParamBuffer(mlp.param_shapes(), np.float64)
    mlp.bind(params)
    rng = np.random.default_rng(seed)
    mlp.initialize(rng)
    params.data[...] += 0.3 * rng.standard_normal(params.size)  # nonzero biases
    x = rng.standard_normal((n, sizes[0]))
    if act == "relu":
        pre, h = [], x
        for layer in mlp.layers:
            pre.append(h @ layer.W + layer.b)
            h = layer.act.forward(pre[-1])
        assume(all(np.min(np.abs(a)) > 1e-3 for a in pre[:-1]))
    ws = mlp.workspace(n, np.float64)
    u = rng.standard_normal((n, sizes[-1]))
    mlp.forward(x, ws)
    params.grad[...] = 7.0
    dx = mlp.backward_input(u.copy(), x, ws).copy()
    assert np.all(params.grad == 7.0)
    mlp.forward(x, ws)
    np.testing.assert_allclose(dx, mlp.backward(u.copy(), x, ws), rtol=1e-12, atol=1e-14)

    def f(x_):
        return mlp.forward(x_, mlp.workspace(n, np.float64)).copy()

    assert rel_error(dx, numerical_vjp(f, x.copy(), u)) <= TOL
