"""The one volume type of the engine, reorientation to the canonical sagittal stack, resampling.

A :class:`Volume` is a voxel array plus its physical geometry, in the ITK convention:
the array is indexed ``[k, j, i]`` (as ``SimpleITK.GetArrayFromImage`` returns it),
``spacing`` and the columns of ``direction`` belong to the axes ``i, j, k``, and
``origin`` and ``direction`` are in LPS millimetres. Slicer's RAS convention is
derived, never stored (see :meth:`Volume.ijk_to_ras`).

The canonical sagittal stack is the layout every algorithm works in:
``array[s, r, c]`` with ``s`` running from the patient's left to right,
``r`` from superior to inferior and ``c`` from anterior to posterior, so that
``array[s]`` is a sagittal image shown the usual way (head up, face left).
Reorientation only permutes and flips axes, so it is exact and reversible.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: LPS direction matrix of the canonical stack. Array axes (0, 1, 2) = (k, j, i) = (s, r, c).
#: Columns (i, j, k) = (posterior (0, 1, 0), inferior (0, 0, -1), right (-1, 0, 0)).
CANONICAL_DIRECTION = np.array(
    [[0.0, 0.0, -1.0],
     [1.0, 0.0, 0.0],
     [0.0, -1.0, 0.0]]
)

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class Volume:
    """A 3D voxel array with spacing (mm), origin (LPS mm) and direction (LPS, columns = i, j, k)."""

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self):
        if self.array.ndim != 3:
            raise ValueError(f"a Volume needs a 3D array, got {self.array.ndim}D")
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "origin", tuple(float(o) for o in self.origin))
        direction = np.asarray(self.direction, dtype=float).reshape(3, 3)
        object.__setattr__(self, "direction", direction)
        if min(self.spacing) <= 0:
            raise ValueError(f"spacing must be positive, got {self.spacing}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)

    def with_array(self, array: np.ndarray) -> "Volume":
        """The same geometry around another array of the same shape (e.g. a mask or a prediction)."""
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise ValueError(f"array shape {array.shape} differs from the volume's {self.array.shape}")
        return Volume(array, self.spacing, self.origin, self.direction)

    def crop(self, box) -> "Volume":
        """The sub-volume ``array[box]`` (``box``: three slices in (k, j, i) order, steps of 1)
        in place: same spacing and direction, origin moved to its first voxel."""
        start = [sl.indices(n)[0] for sl, n in zip(box, self.shape)]
        return Volume(np.ascontiguousarray(self.array[tuple(box)]), self.spacing, tuple(self.index_to_lps(start)),
                      self.direction)

    def ijk_to_lps(self) -> np.ndarray:
        """4x4 matrix mapping homogeneous (i, j, k, 1) indices to LPS millimetres."""
        m = np.eye(4)
        m[:3, :3] = self.direction @ np.diag(self.spacing)
        m[:3, 3] = self.origin
        return m

    def ijk_to_ras(self) -> np.ndarray:
        """4x4 matrix mapping (i, j, k, 1) to RAS millimetres, as Slicer's IJKToRAS."""
        flip = np.diag([-1.0, -1.0, 1.0, 1.0])
        return flip @ self.ijk_to_lps()

    def index_to_lps(self, kji) -> np.ndarray:
        """LPS position (mm) of array indices given as [..., 3] in (k, j, i) order."""
        kji = np.asarray(kji, dtype=float)
        ijk = kji[..., ::-1]
        return ijk @ (self.direction @ np.diag(self.spacing)).T + np.asarray(self.origin)

    def index_to_ras(self, kji) -> np.ndarray:
        """RAS position (mm) of array indices given as [..., 3] in (k, j, i) order."""
        return self.index_to_lps(kji) * np.array([-1.0, -1.0, 1.0])

    def same_geometry(self, other: "Volume", tol: float = 1e-4) -> bool:
        """True when shape, spacing, origin and direction agree within ``tol``."""
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, atol=tol)
            and np.allclose(self.origin, other.origin, atol=tol)
            and np.allclose(self.direction, other.direction, atol=tol)
        )


def volume_from_ras(array: np.ndarray, ijk_to_ras: np.ndarray) -> Volume:
    """Build a Volume from a [k, j, i] array and a Slicer IJKToRAS matrix."""
    m = np.asarray(ijk_to_ras, dtype=float)
    lps = LPS_TO_RAS @ m[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    direction = lps / spacing
    origin = LPS_TO_RAS @ m[:3, 3]
    return Volume(array, tuple(spacing), tuple(origin), direction)


@dataclass(frozen=True)
class Reorientation:
    """An exact axis permutation and flip between an array's layout and the canonical one.

    ``perm[a]`` is the source array axis that becomes canonical axis ``a``;
    ``flip[a]`` says whether that axis is reversed.
    """

    perm: tuple[int, int, int]
    flip: tuple[bool, bool, bool]

    def forward(self, array: np.ndarray) -> np.ndarray:
        """Source layout -> canonical layout."""
        out = np.transpose(array, self.perm)
        flips = tuple(a for a in range(3) if self.flip[a])
        return np.flip(out, flips) if flips else out

    def backward(self, array: np.ndarray) -> np.ndarray:
        """Canonical layout -> source layout (the exact inverse of :meth:`forward`)."""
        flips = tuple(a for a in range(3) if self.flip[a])
        out = np.flip(array, flips) if flips else array
        return np.transpose(out, np.argsort(self.perm))


def _array_axis_directions(vol: Volume) -> np.ndarray:
    """LPS unit vectors of array axes 0, 1, 2 (= k, j, i)."""
    return vol.direction[:, ::-1].T


def canonical_reorientation(vol: Volume) -> Reorientation:
    """The permutation and flips that bring ``vol`` closest to the canonical sagittal stack.

    For oblique volumes each canonical axis takes the array axis most parallel to it;
    no resampling happens, so the result stays exact.
    """
    source = _array_axis_directions(vol)          # rows: array axes, LPS vectors
    target = _array_axis_directions(Volume(np.zeros((1, 1, 1)), direction=CANONICAL_DIRECTION))
    score = target @ source.T                      # [canonical axis, source axis]
    best, best_total = None, -1.0
    for perm in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)):
        total = sum(abs(score[a, perm[a]]) for a in range(3))
        if total > best_total + 1e-9:
            best, best_total = perm, total
    flip = tuple(bool(score[a, best[a]] < 0) for a in range(3))
    return Reorientation(tuple(best), flip)


def _reoriented_geometry(vol: Volume, reo: Reorientation) -> tuple:
    """Spacing, origin and direction of ``vol`` once ``reo`` is applied to its array."""
    axis_dirs = _array_axis_directions(vol)        # [array axis, 3]
    axis_spacing = np.asarray(vol.spacing)[::-1]   # per array axis (k, j, i)
    shape = np.asarray(vol.shape)
    start = np.zeros(3)
    new_dirs, new_spacing = [], []
    for a in range(3):
        src = reo.perm[a]
        sign = -1.0 if reo.flip[a] else 1.0
        if reo.flip[a]:
            start[src] = shape[src] - 1
        new_dirs.append(sign * axis_dirs[src])
        new_spacing.append(axis_spacing[src])
    origin = vol.index_to_lps(start)
    # new array axes (0, 1, 2) = (k, j, i): direction columns are (i, j, k)
    direction = np.stack(new_dirs[::-1], axis=1)
    spacing = tuple(new_spacing[::-1])
    return spacing, tuple(origin), direction


def reorient(vol: Volume, reo: Reorientation) -> Volume:
    """Apply an axis permutation/flip to ``vol``; every voxel keeps its physical position."""
    spacing, origin, direction = _reoriented_geometry(vol, reo)
    return Volume(np.ascontiguousarray(reo.forward(vol.array)), spacing, origin, direction)


def to_canonical(vol: Volume) -> tuple[Volume, Reorientation]:
    """Reorient ``vol`` to the canonical sagittal stack; returns the new volume and the reorientation."""
    reo = canonical_reorientation(vol)
    return reorient(vol, reo), reo


def from_canonical(array: np.ndarray, reference: Volume) -> Volume:
    """Put an array computed in ``reference``'s canonical layout back into ``reference``'s geometry."""
    reo = canonical_reorientation(reference)
    expected = tuple(reference.shape[p] for p in reo.perm)
    if tuple(array.shape) != expected:
        raise ValueError(f"canonical array shape {array.shape} does not match the reference's {expected}")
    return reference.with_array(np.ascontiguousarray(reo.backward(array)))


def to_sitk(vol: Volume):
    """Convert to a SimpleITK image (geometry copied exactly)."""
    import SimpleITK as sitk

    array = vol.array
    if array.dtype == bool:
        array = array.astype(np.uint8)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing(vol.spacing)
    image.SetOrigin(vol.origin)
    image.SetDirection(tuple(vol.direction.ravel()))
    return image


def from_sitk(image) -> Volume:
    """Convert a 3D SimpleITK image to a Volume."""
    import SimpleITK as sitk

    if image.GetDimension() != 3:
        raise ValueError(f"expected a 3D image, got {image.GetDimension()}D")
    array = sitk.GetArrayFromImage(image)
    return Volume(array, image.GetSpacing(), image.GetOrigin(), np.array(image.GetDirection()).reshape(3, 3))


def resample(vol: Volume, spacing, *, label: bool = False) -> Volume:
    """Resample to ``spacing`` (mm, per i, j, k) over the same physical extent.

    Images use linear interpolation; label maps (``label=True``) use nearest
    neighbour so no new label values appear.
    """
    spacing = np.asarray(spacing, dtype=float)
    old_spacing = np.asarray(vol.spacing)
    old_size = np.asarray(vol.shape[::-1])
    size = np.maximum(1, np.round(old_size * old_spacing / spacing)).astype(int)
    return resample_to_grid(vol, tuple(size), tuple(spacing), vol.origin, vol.direction, label=label)


def resample_like(vol: Volume, reference: Volume, *, label: bool = False) -> Volume:
    """Resample ``vol`` onto ``reference``'s grid (shape, spacing, origin, direction)."""
    return resample_to_grid(vol, reference.shape[::-1], reference.spacing, reference.origin,
                            reference.direction, label=label)


def resample_to_grid(vol: Volume, size_ijk, spacing, origin, direction, *, label: bool = False) -> Volume:
    """Resample ``vol`` onto an explicit grid; outside voxels become 0."""
    import SimpleITK as sitk

    f = sitk.ResampleImageFilter()
    f.SetSize([int(s) for s in size_ijk])
    f.SetOutputSpacing([float(s) for s in spacing])
    f.SetOutputOrigin([float(o) for o in origin])
    f.SetOutputDirection([float(d) for d in np.asarray(direction).ravel()])
    f.SetInterpolator(sitk.sitkNearestNeighbor if label else sitk.sitkLinear)
    f.SetDefaultPixelValue(0)
    source = vol if label or vol.array.dtype.kind == "f" else vol.with_array(vol.array.astype(np.float32))
    out = from_sitk(f.Execute(to_sitk(source)))
    if label:
        return out
    return out if vol.array.dtype.kind == "f" else out.with_array(out.array.astype(np.float32))
