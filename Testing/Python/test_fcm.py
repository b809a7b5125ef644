"""Fuzzy c-means: the histogram and torch versions reproduce skfuzzy.cluster.cmeans."""

from __future__ import annotations

import numpy as np
import pytest

from spinetumor.segmentation.fcm import fcm_intensity, fcm_torch, skfuzzy_init

skfuzzy = pytest.importorskip("skfuzzy")


def _tissue_intensities(seed: int, n: int = 6000) -> np.ndarray:
    """uint8 intensities of three 'tissues' in random voxel order (like a flattened slice)."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(30, 8, n // 2), rng.normal(90, 10, n // 3), rng.normal(160, 12, n - n // 2 - n // 3)])
    rng.shuffle(x)
    return x.round().clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("c, m, seed", [(3, 2.0, 3), (4, 2.0, 7), (3, 1.6, 11)])
def test_intensity_fcm_equals_skfuzzy(c, m, seed):
    data = _tissue_intensities(seed).reshape(60, 100)  # any shape: voxels in C order
    ref_centers, ref_u, _, _, ref_jm, ref_p, ref_fpc = skfuzzy.cluster.cmeans(
        data.reshape(1, -1).astype(float), c, m, 0.005, 1000, seed=seed)
    result = fcm_intensity(data, c, m, 0.005, 1000, seed=seed)

    assert np.all(np.diff(result.centers) > 0), "centers must be sorted ascending"
    np.testing.assert_allclose(result.centers, ref_centers[result.order, 0], atol=1e-3)
    memberships = result.memberships()
    assert memberships.shape == (c, 60, 100)
    np.testing.assert_allclose(memberships.reshape(c, -1), ref_u[result.order], atol=1e-3)
    assert result.n_iter == ref_p
    np.testing.assert_allclose(result.jm, ref_jm, rtol=1e-9)
    assert result.fpc == pytest.approx(ref_fpc, abs=1e-9)
    # the table has one column per distinct value, not per voxel
    assert result.table.shape == (c, np.unique(data).size)
    # predict() on the voxels' own values is the same as the lookup
    np.testing.assert_allclose(result.predict(data), memberships, atol=1e-12)
    labels = result.labels()
    assert labels.shape == data.shape
    assert labels[data == data.min()].max() == 0 and labels[data == data.max()].min() == c - 1


def test_intensity_fcm_float_data_and_explicit_init():
    rng = np.random.default_rng(0)
    data = np.concatenate([rng.normal(0.2, 0.05, 700), rng.normal(0.8, 0.05, 500)])
    init = skfuzzy_init(2, data.size, seed=123)
    ref_centers, ref_u, *_ = skfuzzy.cluster.cmeans(data[None], 2, 2.0, 1e-4, 300, init=init.copy())
    result = fcm_intensity(data, 2, 2.0, 1e-4, 300, init=init)
    np.testing.assert_allclose(result.centers, ref_centers[result.order, 0], atol=1e-3)
    np.testing.assert_allclose(result.memberships(), ref_u[result.order], atol=1e-3)
    assert result.centers == pytest.approx([0.2, 0.8], abs=0.02)


def test_binned_fcm_is_close_to_exact():
    data = _tissue_intensities(5).astype(float) + np.random.default_rng(5).uniform(-0.5, 0.5, 6000)
    exact = fcm_intensity(data, 3, seed=1)
    binned = fcm_intensity(data, 3, seed=1, bins=1024)
    assert binned.values.size <= 1024 < exact.values.size
    np.testing.assert_allclose(binned.centers, exact.centers, atol=0.05)
    assert binned.memberships().shape == (3, 6000)
    assert np.mean(binned.labels() == exact.labels()) > 0.999


def test_torch_fcm_equals_skfuzzy_on_several_features():
    rng = np.random.default_rng(2)
    intensity = _tissue_intensities(2, 3000).astype(float)
    features = np.stack([intensity, 0.5 * intensity + rng.normal(0, 20, intensity.size),
                         rng.uniform(0, 50, intensity.size)], axis=1)
    ref_centers, ref_u, _, _, ref_jm, ref_p, _ = skfuzzy.cluster.cmeans(features.T, 4, 1.8, 0.005, 1000, seed=9)
    result = fcm_torch(features, 4, 1.8, 0.005, 1000, seed=9, device="cpu")
    assert np.all(np.diff(result.centers[:, 0]) > 0)
    np.testing.assert_allclose(result.centers, ref_centers[result.order], atol=1e-3)
    np.testing.assert_allclose(result.memberships, ref_u[result.order], atol=1e-3)
    assert result.n_iter == ref_p
    np.testing.assert_allclose(result.jm, ref_jm, rtol=1e-9)
    assert result.device == "cpu"


def test_torch_and_histogram_agree_on_intensities():
    data = _tissue_intensities(4)
    hist = fcm_intensity(data, 3, seed=2)
    torch_result = fcm_torch(data, 3, seed=2, device="cpu")
    np.testing.assert_allclose(torch_result.centers[:, 0], hist.centers, atol=1e-9)
    np.testing.assert_allclose(torch_result.memberships, hist.memberships(), atol=1e-9)


@pytest.mark.parametrize("kwargs, message", [
    (dict(c=1), "at least 2 clusters"),
    (dict(c=3, m=1.0), "fuzzifier m must be > 1"),
    (dict(c=3, maxiter=0), "maxiter must be >= 1"),
])
def test_invalid_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fcm_intensity(np.arange(10.0), **kwargs)
    with pytest.raises(ValueError, match=message):
        fcm_torch(np.arange(10.0), device="cpu", **kwargs)


def test_init_shape_is_checked():
    with pytest.raises(ValueError, match=r"init must have shape \(2, 10\)"):
        fcm_intensity(np.arange(10.0), 2, init=np.ones((2, 9)))
