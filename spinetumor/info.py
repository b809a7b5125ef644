"""A short human-readable description of a volume's geometry and intensities (``spinetumor info``)."""

from __future__ import annotations

import numpy as np

from .volume import Volume, canonical_reorientation


def orientation_code(volume: Volume) -> str:
    """Three letters naming where each of the i, j, k axes points to (ITK 'RAS'/'LPS'-style, e.g. 'PIR')."""
    letters = (("L", "R"), ("P", "A"), ("S", "I"))
    code = ""
    for column in volume.direction.T:
        axis = int(np.argmax(np.abs(column)))
        code += letters[axis][0] if column[axis] > 0 else letters[axis][1]
    return code


def obliquity_degrees(volume: Volume) -> float:
    """Largest angle (degrees) between a voxel axis and the nearest patient axis."""
    cosines = np.max(np.abs(volume.direction), axis=0).clip(-1, 1)
    return float(np.degrees(np.arccos(cosines)).max())


def describe(volume: Volume, name: str = "volume") -> str:
    """Multi-line summary: size, spacing, origin, direction, orientation, sagittal layout, intensities."""
    array = volume.array
    finite = array[np.isfinite(array)] if array.dtype.kind == "f" else array
    reo = canonical_reorientation(volume)
    slices_axis = "ijk"[2 - reo.perm[0]]
    lines = [
        f"file:         {name}",
        f"size (i j k): {' x '.join(str(s) for s in volume.shape[::-1])} voxels",
        f"spacing:      {' x '.join(f'{s:.4g}' for s in volume.spacing)} mm",
        f"origin (LPS): {', '.join(f'{o:.2f}' for o in volume.origin)} mm",
        "direction:    " + " | ".join(" ".join(f"{v:+.4f}" for v in column) for column in volume.direction.T),
        f"orientation:  {orientation_code(volume)} (oblique by {obliquity_degrees(volume):.1f} deg)",
        f"sagittal:     slices along {slices_axis}, {volume.shape[reo.perm[0]]} slices of "
        f"{volume.spacing[2 - reo.perm[0]]:.3g} mm",
        f"data type:    {array.dtype}",
        f"intensity:    min {finite.min():.4g}, max {finite.max():.4g}, mean {finite.mean():.4g}, "
        f"1st-99th percentile {np.percentile(finite, 1):.4g} to {np.percentile(finite, 99):.4g}",
    ]
    return "\n".join(lines)
