"""Bad input gets a clear error naming the argument and the fix, before any work starts."""

import numpy as np
import pytest

from npvae.core.model import VAEModel
from npvae.core.params import ParamBuffer


@pytest.fixture
def model():
    return VAEModel(4, 2, hidden=(3,))


@pytest.mark.parametrize("kwargs,match", [
    ({"latent_dim": 0}, "latent_dim must be >= 1"),
    ({"latent_dim": 2.5}, "latent_dim must be an integer"),
    ({"beta": -1.0}, "beta must be a finite number >= 0"),
    ({"beta": float("nan")}, "beta must be a finite number"),
    ({"n_samples": 0}, "n_samples must be >= 1"),
    ({"hidden": (4, 0)}, "every entry of hidden must be >= 1"),
    ({"free_bits": -0.1}, "free_bits"),
    ({"cond_dim": -1}, "cond_dim must be >= 0"),
    ({"activation": "swish"}, "unknown activation"),
    ({"likelihood": "poisson"}, "unknown likelihood"),
    ({"dtype": "float16"}, "float32 or float64"),
    ({"init": "xavier"}, "init must be"),
    ({"seed": -3}, "seed must be a non-negative integer"),
    ({"backend": "cuda"}, "backend must be one of"),
    ({"likelihood": "gaussian", "variance": 0}, "variance must be a positive"),
])
def test_bad_hyper_parameters(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        VAEModel(4, **kwargs)


@pytest.mark.parametrize("x,match", [
    (np.ones(4), r"must be a batch of shape \(n, 4\). Reshape your data"),
    (np.ones((2, 5)), "5 features, but VAEModel is expecting 4 features as input"),
    (np.ones((2, 2, 2)), "must be 2-D"),
    (np.ones((0, 4)), "is empty"),
    (np.array([[0.5, np.nan, 0, 1]]), r"1 NaN or inf values \(first at index \(0, 1\)\)"),
    (np.array([[0.5, np.inf, 0, 1]]), "NaN or inf"),
    (np.array([["a", "b", "c", "d"]]), "numeric array"),
    (np.ones((2, 4)) * 255, r"targets in \[0, 1\]"),
    (-np.ones((2, 4)), r"targets in \[0, 1\]"),
])
def test_bad_data(model, x, match):
    with pytest.raises((ValueError, TypeError), match=match):
        model.loss_and_grad(x)


def test_bad_noise_and_condition(model):
    x = np.full((2, 4), 0.5)
    with pytest.raises(ValueError, match=r"noise must have shape \(L, N, Z\) = \(1, 2, 2\)"):
        model.loss_and_grad(x, noise=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="not conditional"):
        model.loss_and_grad(x, np.ones((2, 3)))
    cvae = VAEModel(4, 2, hidden=(3,), cond_dim=3)
    with pytest.raises(ValueError, match=r"needs y of shape \(n, 3\)"):
        cvae.loss_and_grad(x)
    with pytest.raises(ValueError, match="y has 1 rows but the batch has 2"):
        cvae.loss_and_grad(x, np.ones((1, 3)))


def test_unbuilt_model_builds_on_first_data_or_says_how():
    m = VAEModel(latent_dim=2, hidden=(3,))
    with pytest.raises(RuntimeError, match="not built yet"):
        m.encode(np.ones((1, 4)))
    m.loss_and_grad(np.full((2, 6), 0.5))
    assert m.input_dim == 6


def test_integer_and_float64_input_is_converted_not_rejected(model):
    loss, _ = model.loss_and_grad(np.array([[0, 1, 1, 0]], dtype=np.int64))
    assert np.isfinite(loss)


def test_param_buffer_errors():
    p = ParamBuffer({"a": (2, 3), "b": (3,)})
    with pytest.raises(KeyError, match="no parameter named 'c'"):
        p.view("c")
    with pytest.raises(ValueError, match="missing"):
        p.load({"a": np.zeros((2, 3))})
    with pytest.raises(ValueError, match=r"expected shape \(3,\)"):
        p.load({"a": np.zeros((2, 3)), "b": np.zeros(4)})
    with pytest.raises(TypeError, match="float32 or float64"):
        ParamBuffer({"a": (1,)}, np.int32)
