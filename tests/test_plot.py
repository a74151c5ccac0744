"""Tests for npvae.plot: every figure renders a non-trivial PNG; bad input is refused."""

import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.figure import Figure

from npvae import plot

H, W = 8, 6


def _images(n, seed=0):
    return np.random.default_rng(seed).uniform(0.0, 1.0, (n, H * W))


def _check_png(path, fig):
    assert isinstance(fig, Figure)
    assert path.exists() and path.stat().st_size > 2000
    pixels = mpimg.imread(path)
    assert pixels.ndim == 3 and min(pixels.shape[:2]) > 150
    assert np.ptp(pixels[..., :3]) > 0.5  # not uniform


HISTORY = [
    {"epoch": e, "train_loss": 200.0 / e + 90, "val_loss": 210.0 / e + 95,
     "train_recon": 180.0 / e + 75, "val_recon": None, "train_kl": 20 - 10 / e}
    for e in range(1, 8)
]


@pytest.mark.parametrize("name", ["grid", "recon", "curves", "traversal", "scatter_int",
                                  "scatter_float", "scatter_none", "manifold"])
def test_figure_writes_png(tmp_path, name):
    path = tmp_path / f"{name}.png"
    rng = np.random.default_rng(1)
    z = rng.standard_normal((200, 2))
    if name == "grid":
        fig = plot.image_grid(_images(7), (H, W), ncols=3, title="t", path=path,
                              row_labels=np.array(["a", "b", "c"]))
    elif name == "recon":
        fig = plot.reconstruction_figure(_images(15), _images(15, 1), (H, W), n=13, path=path)
    elif name == "curves":
        fig = plot.loss_curves(HISTORY, path=path)
    elif name == "traversal":
        fig = plot.traversal_figure(_images(12), (H, W), 3, 4, values=[-2, -1, 1, 2], path=path)
    elif name == "scatter_int":
        fig = plot.latent_scatter(z, rng.integers(0, 4, 200), path=path,
                                  label_names={0: "zero", 1: "one", 2: "two", 3: "three"})
    elif name == "scatter_float":
        fig = plot.latent_scatter(z, z[:, 0], path=path, title="continuous")
    elif name == "scatter_none":
        fig = plot.latent_scatter(z, path=path)
    else:
        fig = plot.manifold_figure(_images(16), (H, W), 4, extent=(-2, 2, -2, 2), path=path)
    _check_png(path, fig)


def test_no_path_returns_figure_without_saving(tmp_path):
    fig = plot.image_grid(_images(4), (H, W))
    assert isinstance(fig, Figure) and list(tmp_path.iterdir()) == []


def test_image_grid_accepts_3d_images_and_pads_last_row():
    fig = plot.image_grid(_images(5).reshape(5, H, W), (H, W), ncols=2)
    mosaic = fig.axes[0].images[0].get_array()
    assert mosaic.shape == (3 * H + 2, 2 * W + 1)
    assert np.ma.getmaskarray(mosaic)[-H:, -W:].all()  # empty sixth cell (NaN, masked)


def test_reconstruction_rows_alternate():
    fig = plot.reconstruction_figure(_images(12), _images(12, 1), (H, W), n=12)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["original", "reconstruction"] * 2


def test_traversal_labels():
    fig = plot.traversal_figure(_images(6), (H, W), 2, 3, values=np.array([-1.5, 0, 1.5]))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["z0", "z1"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["-1.5", "0", "1.5"]


def test_manifold_orientation():
    n, extent = 3, (-1.0, 1.0, 0.0, 4.0)
    zs = plot.manifold_latents(n, extent)
    assert zs.shape == (9, 2)
    # Left half of each image encodes z0, right half z1, scaled to [0, 1].
    u = (zs[:, 0] + 1) / 2
    v = zs[:, 1] / 4
    images = np.stack([np.concatenate([np.full((H, W // 2), a), np.full((H, W // 2), b)], 1)
                       for a, b in zip(u, v, strict=True)]).reshape(9, H * W)
    ax = plot.manifold_figure(images, (H, W), n, extent=extent).axes[0]
    mosaic = ax.images[0].get_array()
    assert mosaic[0, 0] == 0.0 and mosaic[0, -1] == 1.0  # top row: z1 max
    assert mosaic[-1, 0] == 0.0 and mosaic[-1, -1] == 0.0  # bottom-right: z0 max, z1 min
    assert mosaic[-1, -W // 2 - 1] == 1.0
    assert ax.get_xlabel() == "z0" and ax.get_ylabel() == "z1"
    # the tiles do not touch: a white (NaN) line between neighbours, none inside a tile
    gap = np.isnan(np.ma.getdata(mosaic))
    assert gap[H].all() and gap[:, W].all() and not gap[:H, :W].any()
    assert mosaic.shape == (n * (H + 1) - 1, n * (W + 1) - 1)
    centre = ax.images[0].get_extent()
    assert centre[0] < -1.0 < 1.0 < centre[1]  # the corner tiles centred on the extent


def test_loss_curves_say_their_unit():
    fig = plot.loss_curves([{"epoch": 1, "train_loss": 3.0, "train_recon": 2.0,
                             "train_kl": 1.0}])
    assert [ax.get_ylabel() for ax in fig.axes] == ["nats per example"] * 3


def test_latent_scatter_legend_vs_colorbar():
    z = np.random.default_rng(0).standard_normal((50, 2))
    discrete = plot.latent_scatter(z, np.arange(50) % 3)
    assert len(discrete.axes) == 1
    assert [t.get_text() for t in discrete.axes[0].get_legend().get_texts()] == ["0", "1", "2"]
    assert len(plot.latent_scatter(z, np.linspace(0, 1, 50)).axes) == 2  # colorbar
    assert len(plot.latent_scatter(z, np.arange(50)).axes) == 2  # many ints -> colorbar
    strings = plot.latent_scatter(z, np.where(np.arange(50) % 2, "odd", "even"))
    assert len(strings.axes[0].get_legend().get_texts()) == 2


def test_loss_curves_skips_missing_series():
    fig = plot.loss_curves([{"train_loss": 3.0}, {"train_loss": 2.0, "val_loss": 2.5}])
    loss_ax, recon_ax, kl_ax = fig.axes
    assert len(loss_ax.lines) == 2 and len(recon_ax.lines) == 0
    assert recon_ax.texts[0].get_text() == "no data"
    assert list(loss_ax.lines[1].get_xdata()) == [2.0]


# ----------------------------------------------------------------------------- bad input


def test_wrong_image_shape():
    with pytest.raises(ValueError, match="rows have length 48 but image_shape"):
        plot.image_grid(_images(4), (7, 7))
    with pytest.raises(ValueError, match="image_shape"):
        plot.image_grid(_images(4), 48)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_images(bad):
    images = _images(4)
    images[2, 5] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        plot.image_grid(images, (H, W))
    with pytest.raises(ValueError, match="NaN or inf"):
        plot.reconstruction_figure(_images(4), images, (H, W))
    with pytest.raises(ValueError, match="NaN or inf"):
        plot.traversal_figure(images, (H, W), 2, 2)
    with pytest.raises(ValueError, match="NaN or inf"):
        plot.manifold_figure(images, (H, W), 2, extent=(0, 1, 0, 1))


def test_values_outside_unit_interval():
    images = _images(4) * 3 - 1
    with pytest.raises(ValueError, match=r"\[0, 1\].*clip=True"):
        plot.image_grid(images, (H, W))
    mosaic = plot.image_grid(images, (H, W), clip=True).axes[0].images[0].get_array()
    assert np.nanmin(mosaic) == 0.0 and np.nanmax(mosaic) == 1.0


def test_count_mismatches():
    with pytest.raises(ValueError, match="n_latent \\* n_steps = 6"):
        plot.traversal_figure(_images(5), (H, W), 2, 3)
    with pytest.raises(ValueError, match="values has 2 entries"):
        plot.traversal_figure(_images(6), (H, W), 2, 3, values=[0, 1])
    with pytest.raises(ValueError, match="n \\* n = 9"):
        plot.manifold_figure(_images(8), (H, W), 3, extent=(0, 1, 0, 1))
    with pytest.raises(ValueError, match="same shape"):
        plot.reconstruction_figure(_images(4), _images(5), (H, W))
    with pytest.raises(ValueError, match="row_labels"):
        plot.image_grid(_images(4), (H, W), ncols=2, row_labels=["a"])
    with pytest.raises(ValueError, match="extent"):
        plot.manifold_figure(_images(4), (H, W), 2, extent=(1, 0, 0, 1))


def test_bad_scatter_and_history():
    z = np.zeros((10, 3))
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        plot.latent_scatter(z)
    with pytest.raises(ValueError, match="NaN"):
        plot.latent_scatter(np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match="labels must have shape"):
        plot.latent_scatter(np.zeros((10, 2)), np.arange(9))
    with pytest.raises(ValueError, match="no entry for label 2"):
        plot.latent_scatter(np.zeros((3, 2)), [0, 1, 2], label_names=["a", "b"])
    with pytest.raises(ValueError, match="no entry for label -1"):
        plot.latent_scatter(np.zeros((3, 2)), [0, 1, -1], label_names=["a", "b"])
    with pytest.raises(ValueError, match="non-empty"):
        plot.loss_curves([])
    with pytest.raises(ValueError, match="none of the keys"):
        plot.loss_curves([{"epoch": 1, "lr": 0.1}])
    with pytest.raises(TypeError, match="history\\[0\\]\\['train_loss'\\]"):
        plot.loss_curves([{"train_loss": "high"}])
    with pytest.raises(TypeError, match="history\\[1\\]\\['epoch'\\]"):
        plot.loss_curves([{"train_loss": 1.0}, {"epoch": None, "train_loss": 1.0}])
    with pytest.raises(TypeError, match="integer"):
        plot.image_grid(_images(4), (H, W), ncols=2.5)
