"""MIG: ~1 for a representation that copies the factors, ~0 for noise, lower for mixtures."""

import numpy as np
import pytest

from npvae.apps import discretize, entropy, mig, mutual_info_matrix, mutual_information
from npvae.datasets import make_sprites


@pytest.fixture(scope="module")
def factors():
    # the sprites' own factor classes: shape (3), scale (6), rotation (16), x (16), y (16)
    return make_sprites(6000, size=16, seed=3).factor_classes


def test_entropy_and_mutual_information_known_values():
    a = np.repeat([0, 1, 2, 3], 20)
    assert entropy(a) == pytest.approx(np.log(4))
    assert mutual_information(a, a) == pytest.approx(np.log(4))
    assert mutual_information(a, a % 2) == pytest.approx(np.log(2))  # a determines a % 2
    b = np.tile([0, 1], 40)  # independent of a by construction
    assert mutual_information(a, b) == pytest.approx(0.0, abs=1e-12)
    assert mutual_information(np.array(["x", "y"] * 10), np.arange(20) % 2) == \
        pytest.approx(np.log(2))


def test_discretize_equal_width_bins():
    z = np.array([[0.0, 5.0], [0.5, 5.0], [1.0, 5.0], [0.26, 5.0]])
    d = discretize(z, n_bins=4)
    assert d[:, 0].tolist() == [0, 2, 3, 1]  # the maximum goes in the last bin
    assert d[:, 1].tolist() == [0, 0, 0, 0]  # a constant column: bin 0
    with pytest.raises(ValueError, match="NaN"):
        discretize([[np.nan, 1.0]])


def test_mig_is_one_when_each_factor_has_its_own_latent(factors):
    rng = np.random.default_rng(0)
    n, k = factors.shape
    codes = factors + 0.01 * rng.standard_normal(factors.shape)  # monotone copy of each factor
    z = np.column_stack([codes[:, ::-1], rng.standard_normal((n, 3))])  # + 3 noise latents
    score, info = mig(z, factors, return_details=True)
    assert score > 0.95
    np.testing.assert_array_equal(info["best_latent"], np.arange(k)[::-1])
    np.testing.assert_allclose(info["normalized_mi"][np.arange(k)[::-1], np.arange(k)], 1.0)
    assert info["mi"].shape == (k + 3, k) and np.all(info["mi"] >= -1e-12)


def test_mig_is_zero_for_noise(factors):
    z = np.random.default_rng(1).standard_normal((len(factors), 8))
    assert mig(z, factors) < 0.02


def test_mig_drops_when_latents_mix_factors(factors):
    v = factors.astype(float)
    v = (v - v.mean(0)) / v.std(0)
    clean = mig(v, factors)
    rot = np.linalg.qr(np.random.default_rng(2).standard_normal((5, 5)))[0]  # mixes all
    mixed = mig(v @ rot, factors)
    assert clean > 0.95 and mixed < 0.5 * clean


def test_mig_two_latents_for_one_factor_gives_no_gap(factors):
    shape = factors[:, 0].astype(float)
    z = np.column_stack([shape, shape + 0.001])  # the factor is in two latents: gap 0
    assert mig(z, factors[:, :1]) == pytest.approx(0.0, abs=1e-9)


def test_mig_skips_constant_factors_and_checks_input(factors):
    f = np.column_stack([factors[:, 0], np.zeros(len(factors), int)])
    z = np.column_stack([factors[:, 0], np.zeros(len(factors))])
    score, info = mig(z, f, return_details=True)
    assert score == pytest.approx(1.0) and np.isnan(info["gap"][1])
    with pytest.raises(ValueError, match="J >= 2"):
        mig(z[:, :1], f)
    with pytest.raises(ValueError, match="rows"):
        mutual_info_matrix(z[:10], f)
    with pytest.raises(ValueError, match="constant"):
        mig(z, np.zeros((len(f), 1)))
