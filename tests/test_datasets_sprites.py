"""Tests of the procedural sprites dataset."""

import numpy as np
import pytest

from npvae.datasets import load_dataset
from npvae.datasets.sprites import (
    FACTOR_NAMES,
    SHAPE_NAMES,
    factor_grid,
    make_sprites,
    render_sprites,
)


def _centroids(images, size):
    img = images.reshape(-1, size, size)
    mass = img.sum(axis=(1, 2))
    rows = (img.sum(axis=2) * np.arange(size)).sum(axis=1) / mass
    cols = (img.sum(axis=1) * np.arange(size)).sum(axis=1) / mass
    return rows, cols


def test_same_seed_same_arrays_and_different_seed_differs():
    a = make_sprites(500, seed=3)
    b = make_sprites(500, seed=3)
    c = make_sprites(500, seed=4)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.factors, b.factors)
    np.testing.assert_array_equal(a.factor_classes, b.factor_classes)
    assert not np.array_equal(a.factor_classes, c.factor_classes)
    d = make_sprites(500, seed=np.random.default_rng(3))
    np.testing.assert_array_equal(a.images, d.images)


@pytest.mark.parametrize("size", [32, 64])
def test_shapes_dtypes_and_ranges(size):
    s = make_sprites(300, size=size, seed=0)
    assert s.images.shape == (300, size * size) and s.images.dtype == np.float32
    assert set(np.unique(s.images)) <= {0.0, 1.0}
    assert s.image_shape == (size, size)
    assert s.factors.shape == (300, 5) and s.factor_classes.shape == (300, 5)
    assert s.factor_names == FACTOR_NAMES == ("shape", "scale", "rotation", "x", "y")
    assert s.shape_names == SHAPE_NAMES
    assert s.factor_sizes == (3, 6, 16, 16, 16)
    np.testing.assert_array_equal(s.labels, s.factor_classes[:, 0])
    for k, values in enumerate(s.factor_values):
        assert s.factor_classes[:, k].min() >= 0
        assert s.factor_classes[:, k].max() < len(values)
        np.testing.assert_array_equal(s.factors[:, k], values[s.factor_classes[:, k]])
    assert np.all(s.images.sum(axis=1) > 0)


def test_factor_grid_values():
    shape, scale, rotation, x, y = factor_grid()
    np.testing.assert_array_equal(shape, [0, 1, 2])
    np.testing.assert_allclose(scale, np.linspace(0.5, 1, 6), rtol=1e-6)
    np.testing.assert_allclose(rotation, np.arange(16) * 2 * np.pi / 16, rtol=1e-6)
    assert rotation.max() < 2 * np.pi
    np.testing.assert_allclose(x, np.linspace(0, 1, 16), rtol=1e-6)
    np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="n_scales"):
        factor_grid(n_scales=0)


def test_full_grid_in_c_order():
    s = make_sprites(None, n_scales=2, n_rotations=2, n_positions=2)
    assert len(s.images) == 3 * 2 * 2 * 2 * 2
    np.testing.assert_array_equal(s.factor_classes, list(np.ndindex(3, 2, 2, 2, 2)))


def test_samples_are_distinct_cells_unless_replace():
    s = make_sprites(2000, seed=1)
    flat = np.ravel_multi_index(s.factor_classes.T, s.factor_sizes)
    assert len(np.unique(flat)) == 2000
    with pytest.raises(ValueError, match="replace=True"):
        make_sprites(50, n_scales=1, n_rotations=1, n_positions=2)
    drawn = make_sprites(50, n_scales=1, n_rotations=1, n_positions=2, replace=True)
    assert len(drawn.images) == 50
    with pytest.raises(ValueError, match="non-negative"):
        make_sprites(-1)


def test_larger_scale_means_more_pixels():
    s = make_sprites(6000, seed=2)
    area = s.images.sum(axis=1)
    means = [area[s.factor_classes[:, 1] == k].mean() for k in range(6)]
    assert np.all(np.diff(means) > 0)
    for shape in range(3):  # also within every shape
        sel = s.factor_classes[:, 0] == shape
        small = area[sel & (s.factor_classes[:, 1] == 0)].mean()
        large = area[sel & (s.factor_classes[:, 1] == 5)].mean()
        assert large > 2.5 * small  # area grows like scale^2 = 4x


@pytest.mark.parametrize("size", [32, 64])
def test_position_moves_the_centroid(size):
    xs = np.linspace(0, 1, 16)
    rows = []
    for shape in range(3):
        for x in xs:
            rows.append([shape, 0.75, 0.3, x, 0.5])
    images = render_sprites(np.array(rows), size=size)
    r, c = _centroids(images, size)
    c = c.reshape(3, 16)
    assert np.all(np.diff(c, axis=1) > 0)  # x moves the centroid right
    assert np.all(np.ptp(r.reshape(3, 16), axis=1) < 0.75)  # ... and not up or down
    images_y = render_sprites(np.array(rows)[:, [0, 1, 2, 4, 3]], size=size)  # swap x and y
    r_y, c_y = _centroids(images_y, size)
    assert np.all(np.diff(r_y.reshape(3, 16), axis=1) > 0)  # y moves it down


@pytest.mark.parametrize("size", [32, 64])
def test_every_shape_stays_inside_the_image(size):
    values = factor_grid()
    grid = np.array([[shape, 1.0, rot, x, y]
                     for shape in values[0] for rot in values[2]
                     for x in (0.0, 1.0) for y in (0.0, 1.0)])
    images = render_sprites(grid, size=size).reshape(-1, size, size)
    assert np.all(images.sum(axis=(1, 2)) > 0)
    border = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]],
                            axis=1)
    assert border.sum() == 0


def test_largest_scale_never_touches_the_border_anywhere_on_the_grid():
    shape, _, rotation, x, y = factor_grid()
    cells = np.stack(np.meshgrid(shape, [1.0], rotation, x, y, indexing="ij"), -1)
    images = render_sprites(cells.reshape(-1, 5), dtype=np.uint8).reshape(-1, 32, 32)
    assert len(images) == 3 * 16 * 16 * 16
    assert images[:, 0].sum() == images[:, -1].sum() == 0
    assert images[:, :, 0].sum() == images[:, :, -1].sum() == 0


def test_rotation_turns_the_ellipse_and_the_heart_points_down():
    f = np.array([[1, 1.0, 0.0, 0.5, 0.5], [1, 1.0, np.pi / 2, 0.5, 0.5],
                  [2, 1.0, 0.0, 0.5, 0.5], [2, 1.0, np.pi, 0.5, 0.5]])
    img = render_sprites(f, size=64).reshape(-1, 64, 64)

    def width(a):
        return np.ptp(np.nonzero(a.any(axis=0))[0])

    def height(a):
        return np.ptp(np.nonzero(a.any(axis=1))[0])

    assert width(img[0]) > 1.4 * height(img[0])
    assert height(img[1]) > 1.4 * width(img[1])
    rows, _ = _centroids(img[2:].reshape(2, -1), 64)
    box_mid = [np.nonzero(a.any(axis=1))[0].mean() for a in img[2:]]
    assert rows[0] < box_mid[0]  # upright heart: mass (the lobes) above the middle
    assert rows[1] > box_mid[1]  # turned by pi: lobes below


def test_dtypes_agree():
    f = make_sprites(100, seed=5).factors
    as_float = render_sprites(f)
    for dtype in (np.uint8, np.float64, bool):
        np.testing.assert_array_equal(render_sprites(f, dtype=dtype), as_float)
    with pytest.raises(TypeError, match="dtype"):
        render_sprites(f, dtype=np.int16)


@pytest.mark.parametrize("row, message", [
    ([3, 1.0, 0, 0.5, 0.5], "shape"),
    ([0, 1.5, 0, 0.5, 0.5], "scale"),
    ([0, 0.0, 0, 0.5, 0.5], "scale"),
    ([0, 1.0, 0, -0.1, 0.5], "'x' and 'y'"),
    ([0, 1.0, 0, 0.5, 1.1], "'x' and 'y'"),
    ([0, 1.0, np.nan, 0.5, 0.5], "NaN"),
])
def test_bad_factors_are_refused(row, message):
    with pytest.raises(ValueError, match=message):
        render_sprites(np.array([row]))


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"shape \(n, 5\)"):
        render_sprites(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="size"):
        make_sprites(2, size=4)


def test_load_dataset_sprites_split():
    ds = load_dataset("sprites", n_train=800, n_test=200, seed=7)
    assert ds.x_train.shape == (800, 1024) and ds.x_test.shape == (200, 1024)
    assert ds.x_train.dtype == np.float32 and ds.image_shape == (32, 32)
    assert ds.factors_train.shape == (800, 5) and ds.factor_classes_test.shape == (200, 5)
    assert ds.factor_names == FACTOR_NAMES and ds.label_names == SHAPE_NAMES
    np.testing.assert_array_equal(ds.y_train, ds.factor_classes_train[:, 0])
    train = set(np.ravel_multi_index(ds.factor_classes_train.T, (3, 6, 16, 16, 16)))
    test = set(np.ravel_multi_index(ds.factor_classes_test.T, (3, 6, 16, 16, 16)))
    assert not train & test  # no test image is also a training image
    again = load_dataset("sprites", n_train=800, n_test=200, seed=7)
    np.testing.assert_array_equal(ds.x_test, again.x_test)
    assert load_dataset("sprites", n_train=5, n_test=1, size=64).x_train.shape == (5, 4096)
