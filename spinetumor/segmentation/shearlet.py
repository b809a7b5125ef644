"""Discrete shearlet transform and shearlet-threshold denoising of 2D sagittal slices.

The paper (Section III.B) denoises every sagittal slice with the discrete shearlet
transform (Lim 2010) before clustering. This module implements our own FFT-based,
cone-adapted, band-limited shearlet system in the spirit of the fast finite shearlet
transform (Häuser & Steidl 2012) -- written from the construction, not from code:

* Frequencies are normalized per axis to ``xi in [-1, 1)`` (1 = Nyquist), so the
  transform works on any rectangular slice; ``rho = max(|xi_r|, |xi_c|)``.
* **Scales.** A Meyer-type low-pass ``L(rho)`` equals 1 below ``rho0`` and falls smoothly
  (``cos(pi/2 * v(t))``, ``v`` Meyer's polynomial) to 0 at ``2*rho0``. With ``rho0 = 2**-J``
  and ``L_j(rho) = L(rho / 2**j)`` the squared windows telescope:
  ``L_0**2 + sum_j (L_{j+1}**2 - L_j**2) = L_J**2 = 1`` on the whole frequency square.
* **Shears.** Each band is split into the horizontal cone ``|xi_r| <= |xi_c|`` (slope
  ``s = xi_r / xi_c``) and the vertical cone (slope ``xi_c / xi_r``); in each cone the
  windows ``V(K s - k)``, ``k = -K..K``, with ``V(x) = cos(pi/2 * v(|x|))`` on ``[-1, 1]``
  satisfy ``sum_k V(K s - k)**2 = 1``. The two ``k = +-K`` windows of both cones meet on the
  diagonals and are glued into one "seam" shearlet each, so a scale with ``K`` shears has
  ``4 K`` directions (K = 1: 4 directions, K = 2: 8).
* The filters are real, non-negative and symmetrized on the discrete grid
  (``psi(xi)**2`` and ``psi(-xi)**2`` averaged) so the coefficients of a real image are
  real and ``sum psi**2 == 1`` holds at every frequency sample: the system is a Parseval
  frame, the adjoint is the inverse and the reconstruction of unthresholded coefficients
  is exact to rounding (about 1e-15 relative).

The transform is undecimated (shift invariant, no cycle spinning needed) and is computed
with real FFTs on a whole stack of slices at once, one subband at a time, so memory stays
at a few copies of the stack. Filter banks are cached per slice shape.

Denoising thresholds every subband at ``k * sigma * ||psi||`` (``||psi||`` the filter's l2
norm, which is the standard deviation of the subband for unit white noise) with ``sigma``
estimated from the finest scale by the median absolute deviation (Donoho). MRI magnitude
noise is Rician; ``rician=True`` applies the cheap high-SNR bias correction
``sqrt(max(x**2 - sigma**2, 0))`` (Gudbjartsson & Patz 1995) to the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: Shears ``K`` per band, coarse to fine; ``4 K`` directions per band.
DEFAULT_SHEARS = (1, 1, 2, 2)
#: Threshold factors per band, coarse to fine (the finest gets a higher one, as is usual);
#: tuned by PSNR on a phantom in benchmarks/denoising.py.
DEFAULT_K = (2.5, 2.5, 2.5, 3.0)
#: MAD to standard deviation for Gaussian data.
MAD_TO_SIGMA = 1.0 / 0.6744897501960817


@dataclass(frozen=True, eq=False)
class FilterBank:
    """The shearlet filters of one slice shape on the ``rfft2`` half plane.

    ``filters[n]`` has shape ``(H, W // 2 + 1)``; ``scale[n]`` is -1 for the low-pass and
    the band index (0 = coarsest) otherwise; ``norms[n]`` the filter's l2 norm, i.e. the
    standard deviation of its coefficients for unit-variance white noise.
    """

    shape: tuple[int, int]
    shears: tuple[int, ...]
    filters: np.ndarray
    scale: np.ndarray
    norms: np.ndarray

    @property
    def n_scales(self) -> int:
        return len(self.shears)

    def __len__(self) -> int:
        return len(self.filters)


def _meyer_v(t: np.ndarray) -> np.ndarray:
    """Meyer's auxiliary polynomial: 0 below 0, 1 above 1, and ``v(t) + v(1 - t) == 1``."""
    t = np.clip(t, 0.0, 1.0)
    return t ** 4 * (35.0 - 84.0 * t + 70.0 * t ** 2 - 20.0 * t ** 3)


def _lowpass(rho: np.ndarray, rho0: float) -> np.ndarray:
    """Meyer-type low-pass: 1 for ``rho <= rho0``, smooth decay to 0 at ``2 rho0``."""
    return np.cos(0.5 * np.pi * _meyer_v(rho / rho0 - 1.0))


def _shear_window(x: np.ndarray) -> np.ndarray:
    """Window on [-1, 1] whose integer translates have squares summing to one."""
    return np.cos(0.5 * np.pi * _meyer_v(np.abs(x))) * (np.abs(x) < 1.0)


def _full_plane_filters(shape: tuple[int, int], shears: tuple[int, ...]):
    """All filters on the full ``fft2`` grid (before symmetrization), with their scale index."""
    h, w = shape
    xr = 2.0 * np.fft.fftfreq(h)[:, None] * np.ones((1, w))
    xc = 2.0 * np.fft.fftfreq(w)[None, :] * np.ones((h, 1))
    rho = np.maximum(np.abs(xr), np.abs(xc))
    cone_h = np.abs(xr) <= np.abs(xc)  # horizontal cone, the diagonals included
    with np.errstate(divide="ignore", invalid="ignore"):
        slope_h = np.where(cone_h & (xc != 0), xr / np.where(xc == 0, 1, xc), 0.0)
        slope_v = np.where(~cone_h, xc / np.where(xr == 0, 1, xr), 0.0)
    n_scales = len(shears)
    rho0 = 2.0 ** (-n_scales)
    lows = [_lowpass(rho, rho0 * 2.0 ** j) for j in range(n_scales + 1)]
    lows[n_scales] = np.ones_like(rho)  # L_J == 1 on [0, 1]; exact, not just numerically
    filters, scales = [lows[0]], [-1]
    for j, k_max in enumerate(shears):
        band = np.sqrt(np.maximum(lows[j + 1] ** 2 - lows[j] ** 2, 0.0))
        for k in range(-k_max, k_max + 1):
            win_h = np.where(cone_h, _shear_window(k_max * slope_h - k), 0.0)
            win_v = np.where(~cone_h, _shear_window(k_max * slope_v - k), 0.0)
            if abs(k) == k_max:  # seam: glue the two cones' edge windows into one shearlet
                filters.append(band * (win_h + win_v))
                scales.append(j)
            else:
                filters.append(band * win_h)
                filters.append(band * win_v)
                scales += [j, j]
    return filters, scales


@lru_cache(maxsize=4)
def filter_bank(shape: tuple[int, int], shears: tuple[int, ...] = DEFAULT_SHEARS) -> FilterBank:
    """The Parseval shearlet filter bank of a slice shape (cached: built once per shape).

    Each filter is symmetrized on the discrete grid, ``sqrt((psi(xi)**2 + psi(-xi)**2) / 2)``,
    which keeps ``sum psi**2 == 1`` and makes the coefficients of real images real.
    """
    shape = (int(shape[0]), int(shape[1]))
    if min(shape) < 2:
        raise ValueError(f"a slice needs at least 2x2 pixels, got {shape}")
    shears = tuple(int(k) for k in shears)
    if not shears or min(shears) < 1:
        raise ValueError(f"shears must be positive integers, one per scale, got {shears}")
    full, scales = _full_plane_filters(shape, shears)
    h, w = shape
    neg_r = (-np.arange(h)) % h
    neg_c = (-np.arange(w)) % w
    half = w // 2 + 1
    out = np.empty((len(full), h, half))
    norms = np.empty(len(full))
    for n, psi in enumerate(full):
        sym = np.sqrt(0.5 * (psi ** 2 + psi[neg_r][:, neg_c] ** 2))
        norms[n] = np.sqrt(np.mean(sym ** 2))
        out[n] = sym[:, :half]
    out.setflags(write=False)
    return FilterBank(shape, shears, out, np.asarray(scales), norms)


@lru_cache(maxsize=4)
def _filters_cast(bank: "FilterBank", dtype_name: str) -> np.ndarray:
    """The bank's filters in another precision (cached alongside the bank)."""
    return bank.filters.astype(dtype_name)


def _filters_as(bank: FilterBank, dtype: np.dtype) -> np.ndarray:
    """The filters of ``bank`` in working precision ``dtype``."""
    if dtype == bank.filters.dtype:
        return bank.filters
    return _filters_cast(bank, dtype.name)


def _as_stack(image: np.ndarray) -> tuple[np.ndarray, bool]:
    """A float64 ``[n, H, W]`` view of a 2D slice or 3D stack, and whether the input was 2D."""
    array = np.asarray(image, dtype=np.float64)
    if array.ndim == 2:
        return array[None], True
    if array.ndim == 3:
        return array, False
    raise ValueError(f"expected a 2D slice or a 3D stack of slices, got {array.ndim}D")


def _fft_workers(workers: int | None) -> int:
    """FFT threads: ``workers``, or :func:`~spinetumor.device.cpu_threads` when None."""
    from ..device import cpu_threads

    return cpu_threads() if workers is None else int(workers)


def forward(image: np.ndarray, shears: tuple[int, ...] = DEFAULT_SHEARS, workers: int | None = None):
    """Shearlet coefficients of a slice ``[H, W]`` or stack ``[n, H, W]``.

    Returns ``(coefficients, bank)``; ``coefficients`` has shape ``[n_filters, *image.shape]``
    (real). Memory grows with the number of filters: use :func:`denoise_stack` for volumes.
    """
    from scipy import fft

    workers = _fft_workers(workers)
    stack, was_2d = _as_stack(image)
    bank = filter_bank(stack.shape[1:], tuple(shears))
    spectrum = fft.rfft2(stack, workers=workers)
    coeffs = np.stack([fft.irfft2(spectrum * psi, s=bank.shape, workers=workers) for psi in bank.filters])
    return (coeffs[:, 0] if was_2d else coeffs), bank


def inverse(coefficients: np.ndarray, bank: FilterBank, workers: int | None = None) -> np.ndarray:
    """Adjoint (= inverse, the frame being Parseval) of :func:`forward`."""
    from scipy import fft

    workers = _fft_workers(workers)
    coeffs = np.asarray(coefficients, dtype=np.float64)
    if coeffs.shape[0] != len(bank) or tuple(coeffs.shape[-2:]) != bank.shape:
        raise ValueError(f"coefficients {coeffs.shape} do not fit the filter bank ({len(bank)} filters, {bank.shape})")
    total = None
    for c, psi in zip(coeffs, bank.filters):
        term = fft.rfft2(c, workers=workers) * psi
        total = term if total is None else total + term
    return fft.irfft2(total, s=bank.shape, workers=workers)


def estimate_sigma(image: np.ndarray, shears: tuple[int, ...] = DEFAULT_SHEARS, workers: int | None = None) -> float:
    """Noise standard deviation of a slice or stack from the finest-scale shearlet coefficients.

    Each finest-scale subband's median absolute deviation is divided by 0.6745 and by the
    filter's norm; the median over the directions is returned (robust to the few
    directions that carry edges).
    """
    from scipy import fft

    workers = _fft_workers(workers)
    stack, _ = _as_stack(image)
    bank = filter_bank(stack.shape[1:], tuple(shears))
    spectrum = fft.rfft2(stack, workers=workers)
    return _sigma_from_spectrum(spectrum, bank, workers)


def _sigma_from_spectrum(spectrum: np.ndarray, bank: FilterBank, workers, max_samples: int = 1 << 19) -> float:
    """MAD noise estimate over the finest band's subbands (see :func:`estimate_sigma`).

    For speed at most 6 evenly spaced slices are transformed and each subband's median is
    taken over at most ``max_samples`` evenly strided coefficients (the noise level is a
    property of the acquisition, the same in every slice; 5e5 samples put the MAD's own
    relative error near 0.2 %).
    """
    from scipy import fft

    n_slices = spectrum.shape[0]
    chosen = np.unique(np.linspace(0, n_slices - 1, min(n_slices, 6)).round().astype(int))
    spectrum = spectrum[chosen]
    finest = np.flatnonzero(bank.scale == bank.n_scales - 1)
    estimates = []
    for n in finest:
        c = fft.irfft2(spectrum * bank.filters[n].astype(spectrum.real.dtype), s=bank.shape, workers=workers).ravel()
        c = c[:: max(1, c.size // max_samples)]
        mad = np.median(np.abs(c - np.median(c)))
        estimates.append(MAD_TO_SIGMA * mad / bank.norms[n])
    return float(np.median(estimates))


def denoise_stack(
    stack: np.ndarray,
    *,
    sigma: float | None = None,
    k: float | tuple[float, ...] = DEFAULT_K,
    mode: str = "hard",
    shears: tuple[int, ...] = DEFAULT_SHEARS,
    rician: bool = False,
    dtype=np.float32,
    workers: int | None = None,
    return_sigma: bool = False,
):
    """Shearlet-threshold denoising of a 2D slice or of every slice of a ``[n, H, W]`` stack.

    ``sigma`` is the noise standard deviation (estimated from the whole stack when None);
    ``k`` the threshold factor, one value or one per scale (coarse to fine); ``mode`` is
    ``"hard"`` (keep or kill, preserves contrast) or ``"soft"`` (shrink, smoother). The
    low-pass is never thresholded. Slices are independent 2D transforms (the paper
    denoises sagittal slices), computed together for speed. ``dtype`` is the working
    precision: float32 (default) is about twice as fast as float64 and its rounding
    (~1e-7 relative) is far below any noise level. ``workers`` is the number of FFT threads
    (default :func:`~spinetumor.device.cpu_threads`): the slices' transforms are independent,
    so the result is the same for any number. Returns the denoised array (``dtype``, input
    shape) and, with ``return_sigma``, the sigma used.
    """
    from scipy import fft

    workers = _fft_workers(workers)
    if mode not in ("hard", "soft"):
        raise ValueError(f"mode must be 'hard' or 'soft', got {mode!r}")
    stack3, was_2d = _as_stack(stack)
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    stack3 = stack3.astype(dtype, copy=False)
    bank = filter_bank(stack3.shape[1:], tuple(shears))
    filters = _filters_as(bank, dtype)
    factors = np.broadcast_to(np.asarray(k, dtype=float), (bank.n_scales,)) if np.ndim(k) == 0 else np.asarray(k, float)
    if factors.shape != (bank.n_scales,):
        raise ValueError(f"k needs one value or {bank.n_scales} (one per scale), got {len(factors)}")
    spectrum = fft.rfft2(stack3, workers=workers)
    if sigma is None:
        sigma = _sigma_from_spectrum(spectrum, bank, workers)
    sigma = float(sigma)
    total = spectrum * (filters[0] ** 2)  # low-pass kept as is
    for n in range(1, len(bank)):
        psi = filters[n]
        c = fft.irfft2(spectrum * psi, s=bank.shape, workers=workers)
        t = dtype.type(factors[bank.scale[n]] * sigma * bank.norms[n])
        magnitude = np.abs(c)
        if mode == "hard":
            np.multiply(c, magnitude >= t, out=c)
        else:
            np.multiply(np.sign(c), np.maximum(magnitude - t, 0, out=magnitude), out=c)
        total += fft.rfft2(c, workers=workers) * psi
    out = fft.irfft2(total, s=bank.shape, workers=workers)
    if rician:
        out = np.sqrt(np.maximum(out ** 2 - sigma ** 2, 0.0))
    out = out[0] if was_2d else out
    return (out, sigma) if return_sigma else out


def denoise_volume(volume, **params):
    """Shearlet-denoise a :class:`~spinetumor.volume.Volume` slice by sagittal slice, keeping its geometry.

    The volume is brought to the canonical sagittal stack, each sagittal slice is denoised
    (:func:`denoise_stack`, same keyword parameters) and the result is put back into the
    input's orientation: spacing, origin and direction are unchanged.
    """
    from ..volume import from_canonical, to_canonical

    canonical, _ = to_canonical(volume)
    return from_canonical(denoise_stack(canonical.array, **params), volume)
