"""Thick-slice reconstruction: intermediate sagittal slices by linear or cubic interpolation.

The paper's scans had 3-5 mm between sagittal slices; it "reconstructed the missing data
using a combination of bilinear and bicubic interpolation and extracted the data for
consecutive intermediate slices". :func:`reconstruct_thick_slices` interpolates along the
sagittal (left-right) axis only: the in-plane pixels are kept as they are.

Geometry: the first and the last slice stay exactly where they were, so the physical
extent, the origin and the direction are unchanged; the new slice spacing is the extent
divided into equal steps as close as possible to the requested spacing (e.g. 14 gaps of
4.9 mm become 69 gaps of 0.994 mm for a 1 mm target).
"""

from __future__ import annotations

import numpy as np

from ..volume import Volume, canonical_reorientation

METHODS = ("linear", "cubic", "nearest")
#: Slice thickness range (mm) of clinical sagittal T2; the real scans at hand are 1 mm, so the
#: trainers show them as such acquisitions too (:func:`thick_acquisition`).
CLINICAL_SLICE_MM = (3.0, 5.0)
#: Scans with slices thinner than this (mm) count as thin-slice scans (the Chu scans: 1 mm).
THIN_SLICE_MM = 2.0


def _slice_axis(volume: Volume) -> int:
    """The array axis running left-right (the sagittal slice axis)."""
    return int(canonical_reorientation(volume).perm[0])


def new_slice_count(count: int, spacing: float, target_spacing_mm: float) -> int:
    """Number of slices spanning the same extent at (about) ``target_spacing_mm``."""
    if count < 2:
        return count
    return max(2, int(round((count - 1) * spacing / target_spacing_mm)) + 1)


def interpolate_axis(array: np.ndarray, axis: int, count: int, method: str = "cubic") -> np.ndarray:
    """``array`` resampled along ``axis`` to ``count`` samples with the same first and last sample.

    ``linear``: piecewise linear; ``cubic``: not-a-knot cubic spline, clipped to the input's
    range (no overshoot beyond the data); ``nearest``: nearest slice (label maps). All three
    reproduce a linear ramp along the axis exactly (cubic and linear) or on the original slices.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    n = array.shape[axis]
    old = np.arange(n, dtype=float)
    new = np.linspace(0.0, n - 1.0, count)
    if n < 2 or count == n:
        return array.copy()
    if method == "nearest":
        return np.take(array, np.clip(np.round(new).astype(int), 0, n - 1), axis=axis)
    data = np.moveaxis(np.asarray(array, np.float64), axis, 0)
    if method == "linear" or n < 4:
        lo = np.clip(np.floor(new).astype(int), 0, n - 2)
        w = (new - lo).reshape((-1,) + (1,) * (data.ndim - 1))
        out = data[lo] * (1 - w) + data[lo + 1] * w
    else:
        from scipy.interpolate import CubicSpline

        out = CubicSpline(old, data, axis=0, bc_type="not-a-knot")(new)
        out = np.clip(out, data.min(axis=0), data.max(axis=0))
    out = np.moveaxis(out, 0, axis)
    return out.astype(array.dtype) if array.dtype.kind == "f" else out.astype(np.float32)


def reconstruct_thick_slices(volume: Volume, target_spacing_mm: float = 1.0, method: str = "cubic") -> Volume:
    """The volume with sagittal slices every ~``target_spacing_mm``, same extent, origin and direction.

    Use ``method="nearest"`` for label maps. Images come back as float32 (an integer image's
    interpolated values are not integers); label maps keep their type.
    """
    if target_spacing_mm <= 0:
        raise ValueError("target_spacing_mm must be positive")
    axis = _slice_axis(volume)
    ijk = 2 - axis
    spacing = list(volume.spacing)
    n = volume.shape[axis]
    count = new_slice_count(n, spacing[ijk], target_spacing_mm)
    if count == n:
        return volume.with_array(volume.array.copy())
    array = interpolate_axis(volume.array, axis, count, method)
    spacing[ijk] = spacing[ijk] * (n - 1) / (count - 1)
    return Volume(array, tuple(spacing), volume.origin, volume.direction)


def thick_acquisition(image: Volume, slab: int, masks=()) -> tuple[Volume, list[Volume]]:
    """What a scanner with ``slab`` times thicker sagittal slices would have recorded: the
    inverse of :func:`reconstruct_thick_slices`, for training and testing on thin scans.

    Every new slice is the mean of ``slab`` consecutive slices (a slice integrates its slab;
    leftover slices at the end are dropped); each of ``masks`` (label maps on the image's grid)
    takes the slab's centre slice (slice ``slab // 2`` of it), the phantoms' convention for a
    thick slice's reference mask. The new slices lie at the slabs' centres: origin moved by
    ``(slab - 1) / 2`` thin slices along the slice axis, spacing ``slab`` times the old, the
    direction and in-plane grid unchanged. Returns the float32 image and the masks.
    """
    if slab < 1:
        raise ValueError(f"slab must be at least 1 slice, got {slab}")
    axis = _slice_axis(image)
    ijk = 2 - axis
    n = image.shape[axis] // slab
    if n < 1:
        raise ValueError(f"{image.shape[axis]} slices do not fill one slab of {slab}")
    spacing = list(image.spacing)
    step = np.asarray(image.direction)[:, ijk] * spacing[ijk]
    origin = tuple(np.asarray(image.origin) + step * (slab - 1) / 2)
    spacing[ijk] *= slab
    thin = np.moveaxis(np.asarray(image.array, np.float32), axis, 0)[:n * slab]
    thick = thin.reshape(n, slab, *thin.shape[1:]).mean(axis=1)
    out = Volume(np.ascontiguousarray(np.moveaxis(thick, 0, axis)), tuple(spacing), origin, image.direction)
    centre = []
    for mask in masks:
        picked = np.moveaxis(np.asarray(mask.array), axis, 0)[slab // 2:n * slab:slab]
        centre.append(Volume(np.ascontiguousarray(np.moveaxis(picked, 0, axis)), tuple(spacing), origin,
                             image.direction))
    return out, centre
