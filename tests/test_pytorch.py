"""Weights to and from the PyTorch examples VAE (npvae.pytorch): the same input gives the
same mu, logvar, decoder output and loss in both."""

import numpy as np
import pytest

from npvae import VAE
from npvae.pytorch import TORCH_KEYS, from_torch_state_dict, to_torch_state_dict

D, H, Z = 48, 24, 5  # the examples' 784-400-20 at a test's size


def test_state_dict_layout_without_torch():
    vae = VAE(input_dim=D, latent_dim=Z, hidden=(H,), seed=1)
    sd = to_torch_state_dict(vae, as_tensors=False)
    assert tuple(sd) == TORCH_KEYS
    assert sd["fc1.weight"].shape == (H, D) and sd["fc21.weight"].shape == (Z, H)
    assert sd["fc3.weight"].shape == (H, Z) and sd["fc4.weight"].shape == (D, H)
    p = vae.named_parameters()
    np.testing.assert_array_equal(sd["fc22.weight"], p["encoder.out.W"][:, Z:].T)
    np.testing.assert_array_equal(sd["fc22.bias"], p["encoder.out.b"][Z:])
    back = from_torch_state_dict(sd)
    np.testing.assert_array_equal(back.params.data, vae.params.data)
    assert back.get_params()["latent_dim"] == Z and back.n_features_in_ == D
    with pytest.raises(ValueError, match="one hidden layer each way"):
        to_torch_state_dict(VAE(input_dim=D, hidden=(H, H)))
    with pytest.raises(ValueError, match="learned variance"):
        to_torch_state_dict(VAE(input_dim=D, hidden=(H,), likelihood="gaussian-diag"))
    with pytest.raises(ValueError, match=r"missing \['fc4.bias'\]"):
        from_torch_state_dict({k: v for k, v in sd.items() if k != "fc4.bias"})


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install "
                               "torch==2.13.0, the CPU build); the layout is tested without it")


def examples_vae(torch, d=784, h=400, z=20):
    """pytorch/examples vae/main.py, with the sizes as arguments."""

    class ExamplesVAE(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(d, h)
            self.fc21 = torch.nn.Linear(h, z)
            self.fc22 = torch.nn.Linear(h, z)
            self.fc3 = torch.nn.Linear(z, h)
            self.fc4 = torch.nn.Linear(h, d)

        def encode(self, x):
            h1 = torch.relu(self.fc1(x))
            return self.fc21(h1), self.fc22(h1)

        def decode_logits(self, zz):
            return self.fc4(torch.relu(self.fc3(zz)))

        def loss(self, x, eps):  # the examples' loss_function, with given noise
            mu, logvar = self.encode(x)
            logits = self.decode_logits(mu + torch.exp(0.5 * logvar) * eps)
            bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, x,
                                                                       reduction="sum")
            kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
            return (bce + kld) / len(x)  # npvae averages over the batch

    return ExamplesVAE()


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 2e-5)])
def test_torch_model_and_npvae_agree_both_ways(torch, dtype, tol):
    torch.manual_seed(0)
    net = examples_vae(torch, D, H, Z).to(getattr(torch, dtype))
    vae = from_torch_state_dict(net.state_dict(), dtype=dtype)
    x = (np.random.default_rng(0).random((7, D)) < 0.5).astype(dtype)
    eps = np.random.default_rng(1).standard_normal((7, Z)).astype(dtype)
    with torch.no_grad():
        mu_t, lv_t = (a.numpy() for a in net.encode(torch.from_numpy(x)))
        logits_t = net.decode_logits(torch.from_numpy(mu_t)).numpy()
        loss_t = float(net.loss(torch.from_numpy(x), torch.from_numpy(eps)))
    mu, lv = vae.encode(x)
    np.testing.assert_allclose(mu, mu_t, rtol=tol, atol=tol)
    np.testing.assert_allclose(lv, lv_t, rtol=tol, atol=tol)
    np.testing.assert_allclose(vae.decode(mu_t, raw=True), logits_t, rtol=tol, atol=tol)
    loss, _ = vae.loss_and_grad(x, noise=eps[None])
    assert loss == pytest.approx(loss_t, rel=tol)

    # and back: npvae's (trained) weights into a fresh torch model, strictly
    vae.fit(x, epochs=2, progress=False)
    fresh = examples_vae(torch, D, H, Z).to(getattr(torch, dtype))
    fresh.load_state_dict(to_torch_state_dict(vae))
    with torch.no_grad():
        mu_t, lv_t = (a.numpy() for a in fresh.encode(torch.from_numpy(x)))
    mu, lv = vae.encode(x)
    np.testing.assert_allclose(mu, mu_t, rtol=tol, atol=tol)
    np.testing.assert_allclose(lv, lv_t, rtol=tol, atol=tol)
    np.testing.assert_array_equal(from_torch_state_dict(fresh.state_dict(), dtype=dtype)
                                  .params.data, vae.params.data)
