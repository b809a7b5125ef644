"""Shearlet transform (Parseval frame, exact reconstruction) and the denoise() dispatcher."""

from __future__ import annotations

import numpy as np
import pytest

from spinetumor.segmentation import shearlet
from spinetumor.segmentation.denoise import METHODS, denoise
from spinetumor.volume import Volume, to_canonical


def _phantom_slice(shape=(96, 80), seed=0):
    """Piecewise-smooth sagittal-like slice: a gently shaded background, a bright tube, dark blocks."""
    rng = np.random.default_rng(seed)
    r, c = np.mgrid[: shape[0], : shape[1]].astype(float)
    image = 100.0 + 0.2 * r
    image[(np.abs(c - 0.6 * shape[1] - 4 * np.sin(r / 15)) < 5)] = 220.0  # CSF-like tube
    for top in range(6, shape[0] - 14, 22):  # vertebra-like blocks
        image[top: top + 16, 8: int(0.45 * shape[1])] = 60.0 + rng.uniform(-5, 5)
    return image


def _psnr(x, ref):
    return 10 * np.log10(ref.max() ** 2 / np.mean((x - ref) ** 2))


@pytest.mark.parametrize("shape", [(64, 64), (65, 48), (37, 90)])
def test_filter_bank_is_a_parseval_frame(shape):
    bank = shearlet.filter_bank(shape)
    np.testing.assert_allclose((bank.filters ** 2).sum(axis=0), 1.0, atol=1e-12)
    # 4 K directions per scale, plus the low-pass
    assert len(bank) == 1 + sum(4 * k for k in shearlet.DEFAULT_SHEARS)
    for j, k in enumerate(shearlet.DEFAULT_SHEARS):
        assert np.sum(bank.scale == j) == 4 * k
    assert shearlet.filter_bank(shape) is bank  # cached per shape


@pytest.mark.parametrize("shears", [(1, 1, 2, 2), (1, 2, 3)])
def test_reconstruction_of_unthresholded_coefficients_is_exact(shears):
    rng = np.random.default_rng(1)
    image = _phantom_slice() + rng.normal(0, 10, (96, 80))
    coeffs, bank = shearlet.forward(image, shears)
    assert coeffs.shape == (len(bank), 96, 80) and coeffs.dtype == np.float64
    back = shearlet.inverse(coeffs, bank)
    assert np.max(np.abs(back - image)) / np.max(np.abs(image)) < 1e-6
    # Parseval: the coefficients carry exactly the image's energy
    assert np.sum(coeffs ** 2) == pytest.approx(np.sum(image ** 2), rel=1e-9)
    # a stack is transformed slice by slice
    stack = np.stack([image, image[::-1], 2 * image])
    coeffs3, _ = shearlet.forward(stack, shears)
    np.testing.assert_allclose(coeffs3[:, 1], shearlet.forward(image[::-1], shears)[0], atol=1e-9)
    np.testing.assert_allclose(shearlet.inverse(coeffs3, bank), stack, atol=1e-9)


def test_subbands_are_directional():
    """A vertical edge excites the horizontal-frequency cone far more than the vertical one."""
    image = np.zeros((64, 64))
    image[:, 32:] = 1.0
    coeffs, bank = shearlet.forward(image)
    energy = (coeffs ** 2).sum(axis=(1, 2))
    finest = np.flatnonzero(bank.scale == bank.n_scales - 1)
    top = finest[np.argmax(energy[finest])]
    assert energy[top] > 0.5 * energy[finest].sum()  # one direction carries most of it
    assert np.sort(energy[finest])[-3] < 0.05 * energy[top]


def test_sigma_estimate():
    rng = np.random.default_rng(2)
    assert shearlet.estimate_sigma(rng.normal(0, 7.0, (4, 128, 128))) == pytest.approx(7.0, rel=0.03)
    noisy = _phantom_slice((128, 128)) + rng.normal(0, 12.0, (128, 128))
    assert shearlet.estimate_sigma(noisy) == pytest.approx(12.0, rel=0.1)


def test_shearlet_denoising_improves_psnr_and_beats_gaussian():
    rng = np.random.default_rng(3)
    clean = np.stack([_phantom_slice(seed=s) for s in range(3)])
    noisy = clean + rng.normal(0, 15.0, clean.shape)
    out, sigma = shearlet.denoise_stack(noisy, return_sigma=True)
    assert out.shape == clean.shape and out.dtype == np.float32
    assert sigma == pytest.approx(15.0, rel=0.1)
    gain = _psnr(out, clean) - _psnr(noisy, clean)
    assert gain > 6.0  # measured 6.3 dB
    gaussian = denoise(noisy, "gaussian", sigma_mm=1.0)
    assert _psnr(out, clean) > _psnr(gaussian, clean)
    soft = shearlet.denoise_stack(noisy, mode="soft", sigma=15.0)
    assert _psnr(soft, clean) - _psnr(noisy, clean) > 3.0  # measured 3.4 dB
    # given sigma, slices are independent: the stack result is the per-slice result
    one = shearlet.denoise_stack(noisy[1], sigma=15.0)
    np.testing.assert_allclose(shearlet.denoise_stack(noisy, sigma=15.0)[1], one, atol=1e-3)
    # zero threshold = identity (to float32 rounding)
    np.testing.assert_allclose(shearlet.denoise_stack(noisy, sigma=15.0, k=0.0), noisy, atol=1e-3)


def test_rician_correction_removes_background_bias():
    rng = np.random.default_rng(4)
    sigma = 10.0
    background = np.hypot(rng.normal(0, sigma, (2, 96, 96)), rng.normal(0, sigma, (2, 96, 96)))  # Rayleigh
    plain = shearlet.denoise_stack(background, sigma=sigma)
    corrected = shearlet.denoise_stack(background, sigma=sigma, rician=True)
    assert plain.mean() == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.05)  # the Rayleigh mean stays
    assert corrected.mean() < 0.6 * plain.mean()


def test_bad_shearlet_arguments():
    with pytest.raises(ValueError, match="one per scale"):
        shearlet.denoise_stack(np.zeros((32, 32)), k=(1.0, 2.0))
    with pytest.raises(ValueError, match="mode must be 'hard' or 'soft'"):
        shearlet.denoise_stack(np.zeros((32, 32)), mode="medium")
    with pytest.raises(ValueError, match="do not fit the filter bank"):
        shearlet.inverse(np.zeros((3, 32, 32)), shearlet.filter_bank((32, 32)))
    with pytest.raises(ValueError, match="2D slice or a 3D stack"):
        shearlet.forward(np.zeros(10))


def _non_canonical_volume(array):
    """A Volume stored ``[k, j, i] = [c, s, r]``: i inferior, j to the right, k posterior (anisotropic)."""
    direction = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]])  # columns i, j, k in LPS
    return Volume(array, spacing=(0.8, 4.0, 0.7), origin=(10.0, -20.0, 30.0), direction=direction)


@pytest.mark.parametrize("method", METHODS)
def test_denoise_keeps_geometry_and_reduces_noise(method):
    rng = np.random.default_rng(5)
    clean = np.stack([_phantom_slice((64, 56), seed=s) for s in range(4)])  # canonical [s, r, c]
    noisy = clean + rng.normal(0, 12.0, clean.shape)
    # the same data stored in another orientation: transpose to [c, s, r]
    vol = _non_canonical_volume(np.ascontiguousarray(noisy.transpose(2, 0, 1)).astype(np.float32))
    params = {"gaussian": {"sigma_mm": 0.5}}.get(method, {})  # sharp 0.7-0.8 mm test edges: 0.5 mm is the best sigma here
    out = denoise(vol, method, **params)
    assert isinstance(out, Volume) and out.shape == vol.shape and out.same_geometry(vol)
    assert out.spacing == vol.spacing and out.origin == vol.origin
    np.testing.assert_array_equal(out.direction, vol.direction)
    canonical_out = to_canonical(out)[0].array
    canonical_in = to_canonical(vol)[0]
    np.testing.assert_allclose(canonical_in.array, noisy, atol=1e-4)  # the stack we built
    assert canonical_in.spacing == (0.7, 0.8, 4.0)
    if method == "none":
        np.testing.assert_array_equal(canonical_out, noisy.astype(np.float32))
        return
    assert _psnr(canonical_out, clean) > _psnr(noisy, clean) + 2.0
    # an array in canonical layout with the same spacing gives the same result
    np.testing.assert_allclose(denoise(canonical_in.array, method, spacing=canonical_in.spacing, **params),
                               canonical_out, atol=1e-3)


def test_gaussian_respects_slice_spacing():
    stack = np.zeros((9, 32, 32), np.float32)
    stack[4] = 100.0  # one bright sagittal slice
    thin = denoise(stack, "gaussian", spacing=(1.0, 1.0, 1.0), per="volume", sigma_mm=2.0)
    thick = denoise(stack, "gaussian", spacing=(1.0, 1.0, 5.0), per="volume", sigma_mm=2.0)
    per_slice = denoise(stack, "gaussian", spacing=(1.0, 1.0, 5.0), sigma_mm=2.0)
    assert thin[3, 16, 16] > 15.0  # 1 mm slices: the neighbour gets a lot
    assert thick[3, 16, 16] < 6.0 and thick[4, 16, 16] > 85.0  # 5 mm apart: sigma 0.4 slice, ~4 % leaks
    np.testing.assert_array_equal(per_slice[3], 0.0)  # 2D per slice: nothing leaks
    np.testing.assert_allclose(per_slice[4], 100.0, atol=1e-4)


def test_curvature_and_bilateral_in_3d():
    rng = np.random.default_rng(6)
    clean = np.stack([_phantom_slice((48, 40), seed=s) for s in range(5)])
    noisy = (clean + rng.normal(0, 12.0, clean.shape)).astype(np.float32)
    for method in ("curvature", "bilateral"):
        out = denoise(noisy, method, spacing=(1.0, 1.0, 1.0), per="volume")
        assert out.shape == noisy.shape and out.dtype == np.float32
        assert _psnr(out, clean) > _psnr(noisy, clean) + 2.0


def test_denoise_errors():
    with pytest.raises(ValueError, match="unknown denoising method 'median'"):
        denoise(np.zeros((2, 8, 8)), "median")
    with pytest.raises(ValueError, match="per must be 'slice' or 'volume'"):
        denoise(np.zeros((2, 8, 8)), "gaussian", per="row")
    with pytest.raises(ValueError, match="per sagittal slice only"):
        denoise(np.zeros((2, 8, 8)), "shearlet", per="volume")
    with pytest.raises(ValueError, match="denoising method 'gaussian'.*radius"):
        denoise(np.zeros((2, 8, 8)), "gaussian", radius=3)
    with pytest.raises(ValueError, match="spacing must be 3 positive values"):
        denoise(np.zeros((2, 8, 8)), "gaussian", spacing=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="got 1D"):
        denoise(np.zeros(8), "none")


def test_shearlet_result_does_not_depend_on_the_number_of_fft_threads():
    from spinetumor.segmentation.shearlet import denoise_stack

    stack = np.random.default_rng(5).random((3, 40, 36)).astype(np.float32)
    np.testing.assert_array_equal(denoise_stack(stack, workers=1), denoise_stack(stack, workers=2))
    np.testing.assert_array_equal(denoise_stack(stack), denoise_stack(stack, workers=1))
