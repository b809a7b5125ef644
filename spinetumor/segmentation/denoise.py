"""One entry point for the denoising step before clustering (paper Section III.B).

:func:`denoise` takes a :class:`~spinetumor.volume.Volume` (processed in the canonical
sagittal layout and returned with its geometry unchanged) or a canonical array
(``[s, r, c]`` stack or a single ``[r, c]`` slice, returned as float32) and one of:

* ``"shearlet"`` -- our shearlet-threshold denoiser (:mod:`.shearlet`), per sagittal slice,
  the paper's choice; here with the Rician bias correction on by default (MRI magnitude);
* ``"gaussian"`` -- ``scipy.ndimage.gaussian_filter`` with ``sigma_mm`` in millimetres;
* ``"curvature"`` -- SimpleITK ``CurvatureFlowImageFilter`` (``iterations``, ``time_step``);
* ``"bilateral"`` -- SimpleITK ``BilateralImageFilter`` (``domain_sigma_mm``; ``range_sigma``
  defaults to ``range_factor`` times the noise sigma estimated from the image). **The
  default**: it had the best PSNR and SSIM on the phantoms of ``benchmarks/denoising.py``
  (``docs/benchmarks.md``, "Denoising"), about 1.5 dB above the shearlet;
* ``"none"`` -- the input as float32, so a pipeline can switch denoising off.

The filters other than the shearlet work ``per="slice"`` (each sagittal slice in 2D, as
the paper does; the default) or ``per="volume"`` (3D, the slice spacing respected: a
sigma in millimetres spans fewer voxels across thick slices). Spacing comes from the
Volume or, for arrays, from ``spacing`` given as ``(c, r, s)`` millimetres -- the
``(i, j, k)`` order of :attr:`Volume.spacing` for a canonical stack.

Every method's default parameters are the ones ``benchmarks/denoising.py`` tuned by PSNR
on a phantom case separate from its evaluation cases.
"""

from __future__ import annotations

import numpy as np

METHODS = ("shearlet", "none", "gaussian", "curvature", "bilateral")
#: Chosen by measurement (benchmarks/denoising.py): best PSNR and SSIM on the phantoms.
DEFAULT_METHOD = "bilateral"
#: The shearlet's defaults through :func:`denoise` (MRI magnitude data: Rician correction on).
SHEARLET_DEFAULTS = {"mode": "hard", "rician": True}


def denoise(data, method: str = DEFAULT_METHOD, *, spacing=None, per: str = "slice", **params):
    """Denoise a Volume or a canonical array with ``method`` (see the module docstring).

    Returns a Volume with the input's geometry for a Volume, otherwise a float32 array of
    the input's shape. Unknown methods, unknown ``per`` values and parameters a method
    does not take raise ``ValueError``.
    """
    from ..volume import Volume, from_canonical, to_canonical

    if method not in METHODS:
        raise ValueError(f"unknown denoising method {method!r}; choose one of {', '.join(METHODS)}")
    if per not in ("slice", "volume"):
        raise ValueError(f"per must be 'slice' or 'volume', got {per!r}")
    if method == "shearlet" and per != "slice":
        raise ValueError("the shearlet denoiser works per sagittal slice only (per='slice')")
    if isinstance(data, Volume):
        canonical, _ = to_canonical(data)
        out = _denoise_stack(canonical.array, method, canonical.spacing, per, params)
        return from_canonical(out, data)
    array = np.asarray(data)
    if array.ndim == 2:
        spacing2 = (1.0, 1.0) if spacing is None else tuple(spacing)[:2]
        return _denoise_stack(array[None], method, (*spacing2, 1.0), "slice", params)[0]
    if array.ndim != 3:
        raise ValueError(f"expected a Volume, a canonical [s, r, c] stack or an [r, c] slice, got {array.ndim}D")
    spacing3 = (1.0, 1.0, 1.0) if spacing is None else tuple(float(s) for s in spacing)
    if len(spacing3) != 3 or min(spacing3) <= 0:
        raise ValueError(f"spacing must be 3 positive values (c, r, s) in mm, got {spacing}")
    return _denoise_stack(array, method, spacing3, per, params)


def _denoise_stack(stack: np.ndarray, method: str, spacing, per: str, params: dict) -> np.ndarray:
    """Dispatch on ``method`` for a canonical stack with spacing ``(c, r, s)``."""
    stack = np.asarray(stack, dtype=np.float32)
    try:
        if method == "none":
            if params:
                raise TypeError(f"unexpected parameters {sorted(params)}")
            return stack.copy()
        if method == "shearlet":
            from .shearlet import denoise_stack

            return np.asarray(denoise_stack(stack, **{**SHEARLET_DEFAULTS, **params}), dtype=np.float32)
        if method == "gaussian":
            return _gaussian(stack, spacing, per, **params)
        if method == "curvature":
            return _sitk_filter(stack, spacing, per, _curvature_filter(**params))
        return _bilateral(stack, spacing, per, **params)
    except TypeError as exc:  # a parameter the method does not take
        raise ValueError(f"denoising method {method!r}: {exc}") from None


def _gaussian(stack, spacing, per, *, sigma_mm: float = 0.5) -> np.ndarray:
    """Gaussian smoothing with a sigma in millimetres (in-plane only when ``per='slice'``)."""
    from scipy import ndimage

    sc, sr, ss = spacing
    sigma = (0.0 if per == "slice" else sigma_mm / ss, sigma_mm / sr, sigma_mm / sc)
    return ndimage.gaussian_filter(stack, sigma=sigma, mode="nearest").astype(np.float32)


def _curvature_filter(*, iterations: int = 10, time_step: float = 0.025):
    """A configured SimpleITK CurvatureFlowImageFilter (10 steps of 0.025, tuned; ITK's step is 0.05)."""
    import SimpleITK as sitk

    f = sitk.CurvatureFlowImageFilter()
    f.SetNumberOfIterations(int(iterations))
    f.SetTimeStep(float(time_step))
    return f


def _bilateral(stack, spacing, per, *, domain_sigma_mm: float = 1.0, range_sigma: float | None = None,
               range_factor: float = 3.0, samples: int = 100) -> np.ndarray:
    """SimpleITK bilateral filter; the range sigma defaults to ``range_factor`` x the noise sigma."""
    import SimpleITK as sitk

    if range_sigma is None:
        from .shearlet import estimate_sigma

        range_sigma = range_factor * estimate_sigma(stack)
    f = sitk.BilateralImageFilter()
    f.SetDomainSigma(float(domain_sigma_mm))
    f.SetRangeSigma(float(max(range_sigma, 1e-6)))
    f.SetNumberOfRangeGaussianSamples(int(samples))
    return _sitk_filter(stack, spacing, per, f)


def _sitk_filter(stack, spacing, per, sitk_filter) -> np.ndarray:
    """Run a SimpleITK filter per sagittal slice (2D, in-plane spacing) or on the 3D stack."""
    import SimpleITK as sitk

    sc, sr, ss = spacing
    if per == "volume":
        image = sitk.GetImageFromArray(stack)
        image.SetSpacing((sc, sr, ss))
        return sitk.GetArrayFromImage(sitk_filter.Execute(image)).astype(np.float32)
    out = np.empty_like(stack)
    for s in range(stack.shape[0]):
        image = sitk.GetImageFromArray(np.ascontiguousarray(stack[s]))
        image.SetSpacing((sc, sr))
        out[s] = sitk.GetArrayFromImage(sitk_filter.Execute(image))
    return out
