"""Small in-plane rotations of sagittal slices (the paper's 1-10 degrees to the left and right).

A rotation turns each sagittal slice about its centre, in physical millimetres (so
anisotropic in-plane pixels stay correct), and writes the result on the *same* grid:
shape, spacing, origin and direction are unchanged. Images are interpolated (cubic spline
by default), label maps and masks use nearest neighbour so no new values appear. Pixels
that come from outside the field of view are 0.

Sign: a positive angle turns the content counter-clockwise as a sagittal slice is shown
(head up, face left), i.e. from the posterior direction toward the superior one.
"""

from __future__ import annotations

import numpy as np

from ..volume import Volume, from_canonical, to_canonical

#: The paper's range of rotation angles (degrees, each direction).
ANGLE_RANGE = (1.0, 10.0)


def _matrix(angle_deg: float, spacing_rc) -> np.ndarray:
    """Inverse map (output index -> input index) of a rotation about the slice centre, in index units."""
    a = np.radians(angle_deg)
    c, s = np.cos(a), np.sin(a)
    forward = np.array([[c, -s], [s, c]])            # (row, col) in mm: content (0, 1) goes to (-sin, cos)
    sp = np.asarray(spacing_rc, float)
    return np.diag(1 / sp) @ forward.T @ np.diag(sp)


def rotate_slice(array: np.ndarray, angle_deg: float, spacing_rc=(1.0, 1.0), *, label: bool = False,
                 order: int = 3) -> np.ndarray:
    """One 2D slice ``[r, c]`` rotated by ``angle_deg`` about its centre (same shape)."""
    from scipy.ndimage import affine_transform

    array = np.asarray(array)
    centre = (np.asarray(array.shape, float) - 1) / 2
    matrix = _matrix(angle_deg, spacing_rc)
    offset = centre - matrix @ centre
    if label:
        return affine_transform(array, matrix, offset, order=0, mode="constant", cval=0)
    out = affine_transform(array.astype(np.float32), matrix, offset, order=order, mode="constant", cval=0.0)
    return out.astype(array.dtype) if array.dtype.kind == "f" else out


def rotate_stack(array: np.ndarray, angle_deg: float, spacing_src=(1.0, 1.0, 1.0), *, label: bool = False,
                 order: int = 3) -> np.ndarray:
    """A canonical stack ``[s, r, c]`` with every sagittal slice rotated (about the left-right axis)."""
    return np.stack([rotate_slice(a, angle_deg, spacing_src[1:], label=label, order=order) for a in array])


def rotate_volume(volume: Volume, angle_deg: float, *, label: bool = False, order: int = 3) -> Volume:
    """The volume rotated about the left-right axis through its centre, on the same grid."""
    canon, _ = to_canonical(volume)
    spacing = np.asarray(canon.spacing[::-1], float)
    rotated = rotate_stack(canon.array, angle_deg, spacing, label=label, order=order)
    return from_canonical(rotated.astype(volume.array.dtype, copy=False), volume)


def draw_angles(rng: np.random.Generator, count: int, angle_range=ANGLE_RANGE) -> list[float]:
    """``count`` angles of magnitude uniform in ``angle_range``, alternating left and right
    (the first direction drawn), rounded to 0.1 degree."""
    sign = 1.0 if rng.random() < 0.5 else -1.0
    angles = []
    for i in range(count):
        angles.append(round(float(sign * (-1) ** i * rng.uniform(*angle_range)), 1))
    return angles
